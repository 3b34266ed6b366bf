package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/events"
)

// Config is a whole pipeline: one source, its tables, one target.
type Config struct {
	Pipeline string        `yaml:"pipeline" default:"sluice" doc:"Name of the pipeline; names the replication slot and publication (sluice_<pipeline>) and the state kept in the target."`
	Source   Source        `yaml:"source" doc:"The Postgres database to mirror."`
	Tables   []TableSpec   `yaml:"tables" doc:"Tables to mirror: \"schema.table\", or {name: schema.table, key: [col, ...]} to declare a key for a table without a primary key (its REPLICA IDENTITY must then be FULL)."`
	Views    []ViewSpec    `yaml:"views" doc:"SQL views over the tables (DuckDB's dialect), kept up to date incrementally and exactly once; each lands in the target as a table. See docs/views.md."`
	Events   []EventSpec   `yaml:"events" doc:"Streams of JSON events (Kafka topics, Kinesis streams) that views read beside the tables, e.g. to enrich each event with the current row of a mirrored table. See docs/views.md."`
	Target   Target        `yaml:"target" doc:"Where the mirror lives: duckdb:PATH or a postgres:// URL, or {url: ..., schema: ...}."`
	Stream   *Stream       `yaml:"stream" doc:"Optional stream between source and target. Without one, batches go straight to the target in-process and the replication slot is the durable buffer."`
	Redshift *Redshift     `yaml:"redshift" doc:"Settings of a Redshift target (target: redshift://...): the IAM role, the merge schedule, the Data API. A Redshift target reads the changes from stream.kinesis, or from stream.kafka (Amazon MSK, Confluent Cloud, self-managed Kafka)."`
	Batch    Batch         `yaml:"batch" doc:"How changes are grouped on their way to the target."`
	Snapshot Snapshot      `yaml:"snapshot" doc:"The initial copy of each table."`
	Admin    Admin         `yaml:"admin" doc:"The local admin endpoint of a running sluice (status, verify and read-only queries go through it)."`
	StateDir string        `yaml:"state_dir" default:".sluice" doc:"Directory for sluice's local files (admin address, stream producer state)."`
	Shutdown time.Duration `yaml:"shutdown_timeout" default:"30s" doc:"How long a graceful stop may take to finish the batch in flight."`
}

// Source is the Postgres source.
type Source struct {
	URL            string        `yaml:"url" doc:"postgres:// URL of the source database. The role needs REPLICATION (or rds_replication) and SELECT on the tables. Use ${ENV} for the password."`
	Slot           string        `yaml:"slot" doc:"Replication slot name; default sluice_<pipeline>. An existing slot is reused and never dropped by teardown."`
	Publication    string        `yaml:"publication" doc:"Publication name; default sluice_<pipeline>. An existing publication is reused and never dropped by teardown."`
	MaxRetainedWAL Bytes         `yaml:"max_retained_wal" default:"8GiB" doc:"Retained WAL above which status reports the slot as unhealthy and run logs an error every minute. Set max_slot_wal_keep_size on the server for a hard bound."`
	StatusInterval time.Duration `yaml:"status_interval" default:"10s" doc:"How often the slot's position is reported to Postgres; keep it well under wal_sender_timeout."`
}

// TableSpec is one table to mirror.
type TableSpec struct {
	Name   string   `yaml:"name" doc:"schema.table (schema defaults to public)."`
	Key    []string `yaml:"key" doc:"Columns that identify a row, for a table without a primary key (NOT NULL columns; without a key and with REPLICA IDENTITY FULL the table is mirrored row for row)."`
	Mirror *bool    `yaml:"mirror" doc:"false: the table only feeds views and is not mirrored itself. Default true."`
}

// Mirrored reports whether the table is mirrored into the target itself.
func (ts TableSpec) Mirrored() bool { return ts.Mirror == nil || *ts.Mirror }

// ViewSpec is one SQL view.
type ViewSpec struct {
	Name string   `yaml:"name" doc:"The table the view becomes in the target: name or schema.name (schema defaults to public)."`
	Key  []string `yaml:"key" doc:"Output columns that identify a row; derived from the query when omitted (GROUP BY columns, or the keys of the tables whose rows make a row), and checked."`
	SQL  string   `yaml:"sql" doc:"One SELECT over the tables, in DuckDB's SQL dialect."`
}

// EventSpec is a stream of JSON events that views read as a table.
type EventSpec struct {
	Name    string        `yaml:"name" doc:"The table views read the events as: name or schema.name (schema defaults to events)."`
	Kafka   *Kafka        `yaml:"kafka" doc:"The Kafka topic of the events: brokers, topic, client_id, tls and sasl as for stream.kafka. Every partition is read, from the offsets kept with the views' state (a group is not used)."`
	Kinesis *Kinesis      `yaml:"kinesis" doc:"The Kinesis stream of the events: stream, region, endpoint and reject_file as for stream.kinesis. Every shard is read, from the sequence numbers kept with the views' state."`
	Columns []EventColumn `yaml:"columns" doc:"The events' fields, read from each JSON object by name. Views also read event_id (the key: \"shard/sequence\", or \"partition/offset\") and event_time (when the stream received the record)."`
	Keep    bool          `yaml:"keep" doc:"Keep every event in the views' state: the stream is then an input like a table (anywhere in FROM, aggregates), and outputs follow later changes of the tables; the state grows with every event. Default false: each event passes through once, enriched with the tables as they are when it is processed."`
}

// EventColumn is one field of the events.
type EventColumn struct {
	Name string `yaml:"name" doc:"The field's name in the JSON object and the column's in the table."`
	Type string `yaml:"type" doc:"A Postgres type: smallint, integer, bigint, real, double precision, numeric or numeric(p,s), boolean, text, varchar, uuid, date, timestamp, timestamptz (RFC 3339 strings, or seconds since the epoch), json, jsonb."`
}

// Target is where the mirror lives.
type Target struct {
	URL    string `yaml:"url" doc:"duckdb:PATH (a local file, created if missing), postgres://... or redshift://user:password@host:5439/database (redshift: alone with redshift.data_api)."`
	Schema string `yaml:"schema" doc:"Schema in the target; default: the source table's own schema name (public.customers lands in public.customers, in DuckDB too)."`
}

// Stream is the optional stream between source and target.
type Stream struct {
	Kinesis *Kinesis `yaml:"kinesis" doc:"Amazon Kinesis Data Streams."`
	Kafka   *Kafka   `yaml:"kafka" doc:"Apache Kafka (Amazon MSK, Confluent, Redpanda, self-managed). See docs/kafka.md."`
	// Role says which half of the pipeline this process runs.
	Role string `yaml:"role" default:"both" doc:"producer (Postgres -> stream), consumer (stream -> target), or both in one process. With a Redshift target, consumer (or merge) runs only the merge schedule."`
}

// Kinesis addresses a Kinesis data stream.
type Kinesis struct {
	Stream         string `yaml:"stream" doc:"Stream name or ARN."`
	Region         string `yaml:"region" doc:"AWS region; default from the standard AWS chain (AWS_REGION, profile)."`
	Endpoint       string `yaml:"endpoint" doc:"Endpoint override for a Kinesis-compatible server, e.g. http://127.0.0.1:4567."`
	DeadLetterFile string `yaml:"dead_letter_file" doc:"File that receives records over the 1 MiB limit instead of stopping the pipeline."`
	RejectFile     string `yaml:"reject_file" doc:"File that receives stream records that are not valid change records (consumer)."`
}

// Kafka addresses a Kafka topic.
type Kafka struct {
	Brokers        []string   `yaml:"brokers" doc:"Bootstrap brokers, host:port (a list, or one comma-separated string)."`
	Topic          string     `yaml:"topic" doc:"Topic that carries the change records; sluice does not create it. Adding partitions later leaves keys where they are (the producer pins the count)."`
	Group          string     `yaml:"group" doc:"Consumer group (consumer): its members share the partitions. Default: none, one consumer reads every partition. Offsets are kept in the target either way."`
	ClientID       string     `yaml:"client_id" default:"sluice" doc:"client.id sent to the brokers (quotas, broker logs)."`
	TLS            *KafkaTLS  `yaml:"tls" doc:"Encrypt connections (security.protocol SSL, or SASL_SSL with sasl). Implied by AWS_MSK_IAM."`
	SASL           *KafkaSASL `yaml:"sasl" doc:"Authenticate connections."`
	MaxRecordBytes Bytes      `yaml:"max_record_bytes" default:"1000000" doc:"Largest record (value plus key) the producer sends; keep it at or under the topic's max.message.bytes."`
	DeadLetterFile string     `yaml:"dead_letter_file" doc:"File that receives records over max_record_bytes instead of stopping the pipeline."`
	RejectFile     string     `yaml:"reject_file" doc:"File that receives records that are not valid change records (consumer)."`
}

// KafkaTLS configures TLS to the brokers.
type KafkaTLS struct {
	Enabled            bool   `yaml:"enabled" default:"true" doc:"false turns TLS off again (tls: {} alone turns it on)."`
	CAFile             string `yaml:"ca_file" doc:"PEM bundle of the authorities that sign the brokers' certificates; default: the system's roots."`
	CertFile           string `yaml:"cert_file" doc:"Client certificate (PEM), for brokers that authenticate clients by certificate (mTLS)."`
	KeyFile            string `yaml:"key_file" doc:"Key of the client certificate (PEM)."`
	ServerName         string `yaml:"server_name" doc:"Name to check in the brokers' certificates, when it differs from the broker address."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" doc:"Accept any broker certificate. For tests only."`
}

// KafkaSASL configures SASL authentication.
type KafkaSASL struct {
	Mechanism string `yaml:"mechanism" doc:"PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM (credentials from the standard AWS chain)."`
	Username  string `yaml:"username" doc:"User for PLAIN and SCRAM."`
	Password  string `yaml:"password" doc:"Password for PLAIN and SCRAM; use ${ENV}."`
	Region    string `yaml:"region" doc:"AWS region for AWS_MSK_IAM; default from the standard AWS chain."`
}

// Batch bounds batches.
type Batch struct {
	MaxChanges int           `yaml:"max_changes" default:"10000" doc:"Most changes in one batch, in every mode: the source cuts its batches at it, and a stream consumer reads at most this many records for one batch (a Kafka poll; a Kinesis shard's read). A target that falls behind (a warehouse, direct or fed by a stream consumer, or a producer's stream sink) applies up to 5 queued batches at once (5 × max_changes, 2 × max_bytes)."`
	MaxBytes   Bytes         `yaml:"max_bytes" default:"16MiB" doc:"Most bytes (estimated in memory) in one batch."`
	Interval   time.Duration `yaml:"interval" default:"200ms" doc:"A partial batch is sent after this long, bounding latency."`
	QueueBytes Bytes         `yaml:"queue_bytes" default:"64MiB" doc:"Most bytes waiting for the target; the source pauses beyond it (back-pressure, nothing is dropped)."`
}

// Snapshot tunes the initial copy.
type Snapshot struct {
	Workers   int `yaml:"workers" default:"4" doc:"Parallel COPY workers."`
	ChunkRows int `yaml:"chunk_rows" default:"100000" doc:"Rows per snapshot chunk."`
}

// Admin is the local admin endpoint.
type Admin struct {
	Listen string `yaml:"listen" default:"127.0.0.1:0" doc:"Address of the admin HTTP endpoint; loopback only unless you say otherwise. Port 0 picks a free port, written to state_dir."`
}

// TargetKind says which warehouse a target URL names.
type TargetKind string

const (
	TargetDuckDB   TargetKind = "duckdb"
	TargetPostgres TargetKind = "postgres"
	TargetRedshift TargetKind = "redshift"
)

// Kind parses the target URL's scheme.
func (t Target) Kind() (TargetKind, string, error) {
	switch {
	case strings.HasPrefix(t.URL, "duckdb:"):
		p := strings.TrimPrefix(strings.TrimPrefix(t.URL, "duckdb:"), "//")
		if p == "" {
			return "", "", fmt.Errorf("target %q: give a file path, e.g. duckdb:mirror.duckdb", t.URL)
		}
		return TargetDuckDB, p, nil
	case strings.HasPrefix(t.URL, "postgres://"), strings.HasPrefix(t.URL, "postgresql://"):
		return TargetPostgres, t.URL, nil
	case strings.HasPrefix(t.URL, "redshift:"):
		return TargetRedshift, t.URL, nil
	case t.URL == "":
		return "", "", fmt.Errorf("no target: set target (duckdb:PATH, postgres://... or redshift://...) in the config or pass --target")
	}
	return "", "", fmt.Errorf("target %q: want duckdb:PATH, a postgres:// URL or a redshift:// URL", Redact(t.URL))
}

// Tables returns the parsed table ids and declared keys.
func (c *Config) TableIDs() ([]change.TableID, map[change.TableID][]string, error) {
	var ids []change.TableID
	keys := map[change.TableID][]string{}
	seen := map[change.TableID]bool{}
	for i, ts := range c.Tables {
		id, err := change.ParseTableID(ts.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("tables[%d]: %w", i, err)
		}
		if seen[id] {
			return nil, nil, fmt.Errorf("tables[%d]: %s is listed twice", i, id)
		}
		seen[id] = true
		ids = append(ids, id)
		if len(ts.Key) > 0 {
			keys[id] = ts.Key
		}
	}
	return ids, keys, nil
}

var nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// Validate checks everything that can be checked without connecting.
func (c *Config) Validate() error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !nameRE.MatchString(c.Pipeline) {
		add("pipeline %q: use lower-case letters, digits and _ (at most 41), it names the replication slot", c.Pipeline)
	}
	if c.Source.URL == "" && (c.Stream == nil || c.Stream.Role != "consumer") {
		add("source.url is empty: set it to the source database's postgres:// URL (or pass --source)")
	} else if c.Source.URL != "" {
		if u, err := url.Parse(c.Source.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			add("source.url %q: want a postgres://user:password@host:port/database URL", Redact(c.Source.URL))
		}
	}
	if len(c.Tables) == 0 && (c.Stream == nil || c.Stream.Role != "consumer") {
		add("tables is empty: list the tables to mirror, e.g. tables: [public.customers] (or pass --tables)")
	}
	ids, _, err := c.TableIDs()
	if err != nil {
		add("%v", err)
	}
	c.validateViews(ids, add)
	c.validateEvents(ids, add)
	if c.Stream == nil || c.Stream.Role != "producer" {
		if _, _, err := c.Target.Kind(); err != nil {
			add("%v", err)
		}
	}
	if c.Stream != nil {
		switch c.Stream.Role {
		case "producer", "consumer", "both":
		case "merge":
			if !c.IsRedshift() {
				add("stream.role merge runs the Redshift merge schedule: it needs target: redshift://...; use consumer for other targets")
			}
		default:
			add("stream.role %q: want producer, consumer or both (merge with a Redshift target)", c.Stream.Role)
		}
		switch {
		case c.Stream.Kinesis != nil && c.Stream.Kafka != nil:
			add("stream has both kinesis and kafka: a pipeline uses one stream, remove the other")
		case c.Stream.Kafka != nil:
			c.Stream.Kafka.validate("stream.kafka", add)
		case c.Stream.Kinesis == nil || c.Stream.Kinesis.Stream == "":
			add("stream.kinesis.stream is empty: give the Kinesis stream name or ARN (or use stream.kafka with brokers and topic)")
		}
	}
	c.validateRedshift(add)
	if c.Batch.MaxChanges < 1 {
		add("batch.max_changes must be at least 1")
	}
	if c.Batch.MaxBytes < 1024 {
		add("batch.max_bytes must be at least 1KiB")
	}
	if c.Batch.Interval <= 0 {
		add("batch.interval must be positive")
	}
	if c.Snapshot.Workers < 1 || c.Snapshot.Workers > 64 {
		add("snapshot.workers must be between 1 and 64")
	}
	if c.Snapshot.ChunkRows < 1 {
		add("snapshot.chunk_rows must be at least 1")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

var kafkaTopicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// validate checks a Kafka address; where names it in messages
// ("stream.kafka", "events[0].kafka").
func (k *Kafka) validate(where string, add func(string, ...any)) {
	if len(k.Brokers) == 0 {
		add(where + ".brokers is empty: list the bootstrap brokers, e.g. brokers: [broker-1:9092, broker-2:9092]")
	}
	for i, b := range k.Brokers {
		if j := strings.LastIndex(b, ":"); j <= 0 || j == len(b)-1 {
			add(where+".brokers[%d] %q is not host:port: write it like broker-1.example.com:9092", i, b)
		}
	}
	switch {
	case k.Topic == "":
		add(where + ".topic is empty: give the topic that carries the change records")
	case !kafkaTopicRE.MatchString(k.Topic):
		add(where+".topic %q is not a valid topic name: use 1-249 characters of a-z A-Z 0-9 . _ -", k.Topic)
	}
	if k.MaxRecordBytes < 1024 {
		add(where + ".max_record_bytes must be at least 1KiB (default 1000000, the broker's default max.message.bytes less overhead)")
	}
	if t := k.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		add(where + ".tls: cert_file and key_file go together (the client certificate and its key): set both or neither")
	}
	if s := k.SASL; s != nil {
		switch strings.ToUpper(s.Mechanism) {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			if s.Username == "" || s.Password == "" {
				add(where+".sasl: mechanism %s needs username and password (write the password as ${ENV})", s.Mechanism)
			}
		case "AWS_MSK_IAM":
			if k.TLS != nil && !k.TLS.Enabled {
				add(where + ".sasl.mechanism AWS_MSK_IAM needs TLS: MSK offers IAM only on its TLS listener (port 9098); remove tls.enabled: false")
			}
		case "":
			add(where + ".sasl.mechanism is empty: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM")
		default:
			add(where+".sasl.mechanism %q is not supported: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM", s.Mechanism)
		}
	}
}

// ViewIDs returns the views' target table names, in config order.
func (c *Config) ViewIDs() ([]change.TableID, error) {
	var out []change.TableID
	for i, v := range c.Views {
		id, err := change.ParseTableID(v.Name)
		if err != nil {
			return nil, fmt.Errorf("views[%d]: %w", i, err)
		}
		out = append(out, id)
	}
	return out, nil
}

// validateViews checks what can be checked of the views without the
// source's schemas (the SQL itself is checked at start-up).
func (c *Config) validateViews(tables []change.TableID, add func(string, ...any)) {
	seen := map[change.TableID]string{}
	for i, ts := range c.Tables {
		if i < len(tables) && ts.Mirrored() {
			seen[tables[i]] = "table"
		}
	}
	for i, v := range c.Views {
		if v.Name == "" {
			add("views[%d]: name is empty: name the table the view becomes in the target", i)
			continue
		}
		id, err := change.ParseTableID(v.Name)
		if err != nil {
			add("views[%d]: %v", i, err)
			continue
		}
		if what, ok := seen[id]; ok {
			add("views[%d]: %s is also a mirrored %s: give the view another name", i, id, what)
		}
		seen[id] = "view"
		if strings.TrimSpace(v.SQL) == "" {
			add("views[%d] (%s): sql is empty: write one SELECT over the tables", i, id)
		}
	}
	if len(c.Views) == 0 {
		for i, ts := range c.Tables {
			if !ts.Mirrored() && i < len(tables) {
				add("tables[%d]: %s has mirror: false but no view reads it: remove it or add a view", i, tables[i])
			}
		}
	}
	if len(c.Views) > 0 && c.Stream != nil && c.Stream.Role == "consumer" {
		add("views run where the source is read: put them in the producer's configuration (role producer or both), not the consumer's")
	}
}

// EventTables returns the tables views read the event streams as, in
// config order.
func (c *Config) EventTables() ([]*change.Table, error) {
	var out []*change.Table
	for i, ev := range c.Events {
		cols := make([]events.Column, len(ev.Columns))
		for j, col := range ev.Columns {
			cols[j] = events.Column{Name: col.Name, Type: col.Type}
		}
		t, err := events.Table(ev.Name, cols)
		if err != nil {
			return nil, fmt.Errorf("events[%d]: %w", i, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// validateEvents checks the event streams.
func (c *Config) validateEvents(tables []change.TableID, add func(string, ...any)) {
	if len(c.Events) == 0 {
		return
	}
	if len(c.Views) == 0 {
		add("events: no view reads them: add a view that reads each stream (FROM events.<name>), or remove events")
	}
	if c.Stream != nil && c.Stream.Role == "consumer" {
		add("events feed views, which run where the source is read: put them in the producer's configuration (role producer or both), not the consumer's")
	}
	taken := map[change.TableID]string{}
	for i, id := range tables {
		if i < len(c.Tables) {
			taken[id] = "tables[" + fmt.Sprint(i) + "]"
		}
	}
	if views, err := c.ViewIDs(); err == nil {
		for i, id := range views {
			taken[id] = "views[" + fmt.Sprint(i) + "]"
		}
	}
	evTables, err := c.EventTables()
	if err != nil {
		add("%v", err)
	}
	for i, ev := range c.Events {
		where := fmt.Sprintf("events[%d]", i)
		if ev.Name == "" {
			add("%s: name is empty: name the table views read the events as, e.g. name: clicks (read as events.clicks)", where)
		}
		if err == nil {
			id := evTables[i].ID()
			if other, ok := taken[id]; ok {
				add("%s: %s is also the name of %s: give the event stream another name", where, id, other)
			}
			taken[id] = where
		}
		switch {
		case ev.Kafka != nil && ev.Kinesis != nil:
			add("%s has both kafka and kinesis: an event stream is one topic or one stream", where)
		case ev.Kafka != nil:
			ev.Kafka.validate(where+".kafka", add)
			if ev.Kafka.Group != "" {
				add("%s.kafka.group: event streams are read without a consumer group (the offsets are kept with the views' state): remove group", where)
			}
		case ev.Kinesis != nil:
			if ev.Kinesis.Stream == "" {
				add("%s.kinesis.stream is empty: give the Kinesis stream name or ARN", where)
			}
		default:
			add("%s: say where the events are: kafka: {brokers, topic} or kinesis: {stream}", where)
		}
	}
}

// SlotName is the replication slot's name.
func (c *Config) SlotName() string {
	if c.Source.Slot != "" {
		return c.Source.Slot
	}
	return "sluice_" + c.Pipeline
}

// PublicationName is the publication's name.
func (c *Config) PublicationName() string {
	if c.Source.Publication != "" {
		return c.Source.Publication
	}
	return "sluice_" + c.Pipeline
}

// AdminFile is where a running sluice writes its admin address.
func (c *Config) AdminFile() string {
	return filepath.Join(c.StateDir, c.Pipeline+".admin")
}

// Redact hides the password of a URL for logs and errors.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Redshift configures a Redshift target. Redshift reads the changes from
// the Kinesis stream or the Kafka topic itself (streaming ingestion); sluice creates the
// objects that do so (`sluice setup`) and merges what landed into the
// mirrored tables on a schedule.
type Redshift struct {
	RoleARN                     string           `yaml:"role_arn" doc:"Required (except for a self-managed Kafka with kafka_authentication none). ARN of the IAM role Redshift assumes to read the stream (arn:aws:iam::<account>:role/<name>), associated with the cluster or workgroup; sluice plan prints its trust and permission policies."`
	MSKClusterARN               string           `yaml:"msk_cluster_arn" doc:"With stream.kafka on Amazon MSK: the cluster's ARN (arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>); Redshift reads the topic through CREATE EXTERNAL SCHEMA ... FROM MSK. Set this or kafka_uri."`
	KafkaURI                    string           `yaml:"kafka_uri" doc:"With stream.kafka on Confluent Cloud or self-managed Kafka: the bootstrap broker Redshift connects to, host:port (it may differ from stream.kafka.brokers, which sluice's producer uses); CREATE EXTERNAL SCHEMA ... FROM KAFKA ... URI. Set this or msk_cluster_arn."`
	KafkaAuthentication         string           `yaml:"kafka_authentication" doc:"How Redshift authenticates to the Kafka brokers: iam (MSK only), mtls, or none. Default: iam with msk_cluster_arn, none with kafka_uri."`
	KafkaCertificateARN         string           `yaml:"kafka_certificate_arn" doc:"With kafka_authentication mtls: the ACM certificate Redshift presents (or set kafka_secret_arn)."`
	KafkaSecretARN              string           `yaml:"kafka_secret_arn" doc:"With kafka_authentication mtls: the Secrets Manager secret holding the client certificate and key (or set kafka_certificate_arn)."`
	Account                     string           `yaml:"account" doc:"12-digit AWS account that owns the stream; default: taken from stream.kinesis.stream when that is an ARN."`
	Region                      string           `yaml:"region" doc:"AWS region of the stream; default: stream.kinesis.region, the stream ARN's region, or AWS_REGION."`
	ChainRoleARNs               []string         `yaml:"chain_role_arns" doc:"Further IAM roles, in order, that role_arn assumes one after the other (role chaining, e.g. to read a stream of another account); the last one reads the stream. CREATE EXTERNAL SCHEMA names them all, and sluice plan prints each role's trust and permission policy."`
	KMSKeyARN                   string           `yaml:"kms_key_arn" doc:"The stream's customer-managed KMS key, if any; the permission policy then grants kms:Decrypt on it."`
	CaseSensitiveParameterGroup bool             `yaml:"case_sensitive_parameter_group" doc:"Set to true once the cluster's parameter group (Serverless: the workgroup's parameters) sets enable_case_sensitive_identifier to true. The streaming view refreshes itself with the parameter group's setting, not sluice's session's, so a stream, view or schema name with upper-case letters is refused without it."`
	ExternalSchema              string           `yaml:"external_schema" doc:"Redshift schema mapped to the stream (CREATE EXTERNAL SCHEMA ... FROM KINESIS, MSK or KAFKA). Default: sluice_kinesis, or sluice_kafka with stream.kafka."`
	TargetSchema                string           `yaml:"target_schema" doc:"Schema of the mirrored tables in Redshift; default: target.schema, else each source table's own schema."`
	MergeInterval               time.Duration    `yaml:"merge_interval" default:"1m" doc:"How often the landed records are merged into the mirrored tables."`
	DataAPI                     *RedshiftDataAPI `yaml:"data_api" doc:"Reach Redshift through the Redshift Data API (IAM, HTTPS) instead of the wire protocol; the target is then just redshift:."`
	Dialect                     string           `yaml:"dialect" doc:"For tests only: postgres runs the same plan and merge against a Postgres database standing in for Redshift. Leave empty."`
}

// RedshiftDataAPI addresses Redshift through the Data API.
type RedshiftDataAPI struct {
	ClusterIdentifier string `yaml:"cluster_identifier" doc:"Provisioned cluster identifier (or set workgroup_name)."`
	WorkgroupName     string `yaml:"workgroup_name" doc:"Redshift Serverless workgroup (or set cluster_identifier)."`
	Database          string `yaml:"database" doc:"Database name."`
	SecretARN         string `yaml:"secret_arn" doc:"Secrets Manager secret with the database credentials. With neither secret_arn nor db_user, sluice connects as the caller's IAM identity (temporary credentials)."`
	DbUser            string `yaml:"db_user" doc:"Database user for temporary credentials (provisioned clusters only: on Serverless the user comes from the IAM identity; or set secret_arn)."`
}

// IsRedshift reports whether the target is Redshift.
func (c *Config) IsRedshift() bool {
	k, _, err := c.Target.Kind()
	return err == nil && k == TargetRedshift
}

var (
	roleARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	awsRegionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

// validateRedshift checks the redshift section and what a Redshift target
// needs of the rest.
func (c *Config) validateRedshift(add func(string, ...any)) {
	if !c.IsRedshift() {
		if c.Redshift != nil && (c.Stream == nil || c.Stream.Role != "producer") {
			add("redshift is set but the target is not Redshift: set target: redshift://user:password@host:5439/database, or remove the redshift section")
		}
		return
	}
	kafka := c.Stream != nil && c.Stream.Kafka != nil
	if !kafka && (c.Stream == nil || c.Stream.Kinesis == nil || c.Stream.Kinesis.Stream == "") {
		add("a Redshift target needs a Kinesis stream (Redshift reads the changes from it natively): add stream: {kinesis: {stream: NAME, region: REGION}}, or a Kafka topic: stream.kafka with redshift.msk_cluster_arn (Amazon MSK) or redshift.kafka_uri")
	}
	if c.Source.URL == "" {
		add("source.url is empty: a Redshift target needs the source even for the merge, to build the plan from the tables' schemas")
	}
	r := c.Redshift
	if r == nil {
		r = &Redshift{}
	}
	if kafka {
		c.validateRedshiftKafka(r, add)
	} else if r.MSKClusterARN != "" || r.KafkaURI != "" || r.KafkaAuthentication != "" || r.KafkaCertificateARN != "" || r.KafkaSecretARN != "" {
		add("redshift.msk_cluster_arn, kafka_uri and kafka_authentication are for a Redshift target fed from stream.kafka; this pipeline's stream is Kinesis: remove them, or use stream.kafka")
	}
	switch {
	case r.RoleARN == "" && kafka && !kafkaNeedsRole(r):
	case r.RoleARN == "":
		add("redshift.role_arn is empty: set the ARN of the IAM role Redshift assumes to read the stream, arn:aws:iam::<account>:role/<name> (`sluice plan` prints its trust and permission policies)")
	case strings.Contains(r.RoleARN, ":kinesis:"):
		add("redshift.role_arn %q is a Kinesis stream ARN: set the ARN of the IAM role Redshift assumes (arn:aws:iam::<account>:role/<name>); the stream goes in stream.kinesis.stream", r.RoleARN)
	case !roleARNRE.MatchString(r.RoleARN):
		add("redshift.role_arn %q: want an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>", r.RoleARN)
	}
	streamIsARN := c.Stream != nil && c.Stream.Kinesis != nil && strings.HasPrefix(c.Stream.Kinesis.Stream, "arn:")
	if r.Account == "" && !streamIsARN && !kafka {
		add("redshift.account is empty: set the 12-digit AWS account that owns the stream, or give stream.kinesis.stream as the stream's ARN")
	} else if r.Account != "" && !accountRE.MatchString(r.Account) {
		add("redshift.account %q: want the 12-digit AWS account ID", r.Account)
	}
	for i, arn := range r.ChainRoleARNs {
		if !roleARNRE.MatchString(arn) {
			add("redshift.chain_role_arns[%d] %q: want an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>", i, arn)
		}
	}
	if r.Region != "" && !awsRegionRE.MatchString(r.Region) {
		add("redshift.region %q: want an AWS region such as us-east-1", r.Region)
	}
	if r.MergeInterval <= 0 {
		add("redshift.merge_interval must be positive, e.g. 1m")
	}
	switch r.Dialect {
	case "", "redshift", "postgres":
	default:
		add("redshift.dialect %q: leave it empty (postgres is for tests only)", r.Dialect)
	}
	u, err := url.Parse(c.Target.URL)
	if err != nil {
		add("target %q: want redshift://user:password@host:5439/database", Redact(c.Target.URL))
		return
	}
	if d := r.DataAPI; d != nil {
		if u.Host != "" {
			add("target %q names a host and redshift.data_api is set: use one way to reach Redshift (target: redshift: with the Data API)", Redact(c.Target.URL))
		}
		if (d.ClusterIdentifier == "") == (d.WorkgroupName == "") {
			add("redshift.data_api: set exactly one of cluster_identifier (provisioned) and workgroup_name (serverless)")
		}
		if d.Database == "" {
			add("redshift.data_api.database is empty: set the database name")
		}
		// With neither secret_arn nor db_user the Data API authenticates the
		// caller's IAM identity, on a cluster and on Serverless alike:
		// https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ExecuteStatement.html
		if d.SecretARN != "" && d.DbUser != "" {
			add("redshift.data_api: set one of secret_arn and db_user, not both (or neither, to connect as your IAM identity)")
		}
		if d.WorkgroupName != "" && d.DbUser != "" {
			add("redshift.data_api.db_user is for provisioned clusters only: on Serverless workgroup %s the database user comes from your IAM identity; remove db_user, or set secret_arn", d.WorkgroupName)
		}
		return
	}
	if u.Host == "" || strings.Trim(u.Path, "/") == "" {
		add("target %q: want redshift://user:password@host:5439/database (or target: redshift: with redshift.data_api)", Redact(c.Target.URL))
	}
}

// kafkaNeedsRole: Redshift reaches MSK through AWS, and reads an mTLS
// client certificate from ACM or Secrets Manager; only a self-managed
// Kafka without authentication needs no role.
func kafkaNeedsRole(r *Redshift) bool {
	return r.MSKClusterARN != "" || strings.EqualFold(r.KafkaAuthentication, "mtls")
}

// validateRedshiftKafka checks what a Redshift target fed from Kafka needs
// of the redshift section; the plan (warehouse/redshift) checks the ARNs'
// forms in detail.
func (c *Config) validateRedshiftKafka(r *Redshift, add func(string, ...any)) {
	switch {
	case r.MSKClusterARN == "" && r.KafkaURI == "":
		add("a Redshift target fed from stream.kafka needs to know how Redshift reaches the brokers: set redshift.msk_cluster_arn (Amazon MSK: arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>) or redshift.kafka_uri (Confluent Cloud or self-managed Kafka: host:port)")
	case r.MSKClusterARN != "" && r.KafkaURI != "":
		add("redshift.msk_cluster_arn and redshift.kafka_uri are both set: set msk_cluster_arn for Amazon MSK, or kafka_uri for any other Kafka, not both")
	case r.MSKClusterARN != "" && !strings.HasPrefix(r.MSKClusterARN, "arn:"):
		add("redshift.msk_cluster_arn %q: want the cluster's ARN, arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>", r.MSKClusterARN)
	}
	switch a := strings.ToLower(r.KafkaAuthentication); a {
	case "", "none":
	case "iam":
		if r.MSKClusterARN == "" {
			add("redshift.kafka_authentication iam is for Amazon MSK only (redshift.msk_cluster_arn); with kafka_uri use mtls or none")
		}
	case "mtls":
		if (r.KafkaCertificateARN == "") == (r.KafkaSecretARN == "") {
			add("redshift.kafka_authentication mtls needs the client certificate: set exactly one of redshift.kafka_certificate_arn (ACM) and redshift.kafka_secret_arn (Secrets Manager)")
		}
	default:
		add("redshift.kafka_authentication %q: want iam (MSK only), mtls or none", r.KafkaAuthentication)
	}
	if r.KMSKeyARN != "" {
		add("redshift.kms_key_arn is for a Kinesis stream encrypted with a customer-managed key; with stream.kafka remove it")
	}
}
