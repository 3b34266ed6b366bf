package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// Config is a whole pipeline: one source, its tables, one target.
type Config struct {
	Pipeline string        `yaml:"pipeline" default:"sluice" doc:"Name of the pipeline; names the replication slot and publication (sluice_<pipeline>) and the state kept in the target."`
	Source   Source        `yaml:"source" doc:"The Postgres database to mirror."`
	Tables   []TableSpec   `yaml:"tables" doc:"Tables to mirror: \"schema.table\", or {name: schema.table, key: [col, ...]} to declare a key for a table without a primary key (its REPLICA IDENTITY must then be FULL)."`
	Target   Target        `yaml:"target" doc:"Where the mirror lives: duckdb:PATH or a postgres:// URL, or {url: ..., schema: ...}."`
	Stream   *Stream       `yaml:"stream" doc:"Optional stream between source and target. Without one, batches go straight to the target in-process and the replication slot is the durable buffer."`
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
	Name string   `yaml:"name" doc:"schema.table (schema defaults to public)."`
	Key  []string `yaml:"key" doc:"Columns that identify a row, for a table without a primary key."`
}

// Target is where the mirror lives.
type Target struct {
	URL    string `yaml:"url" doc:"duckdb:PATH (a local file, created if missing) or postgres://... ."`
	Schema string `yaml:"schema" doc:"Schema in the target; default: the source table's own schema name (public.customers lands in public.customers, in DuckDB too)."`
}

// Stream is the optional stream between source and target.
type Stream struct {
	Kinesis *Kinesis `yaml:"kinesis" doc:"Amazon Kinesis Data Streams."`
	// Role says which half of the pipeline this process runs.
	Role string `yaml:"role" default:"both" doc:"producer (Postgres -> stream), consumer (stream -> target), or both in one process."`
}

// Kinesis addresses a Kinesis data stream.
type Kinesis struct {
	Stream         string `yaml:"stream" doc:"Stream name or ARN."`
	Region         string `yaml:"region" doc:"AWS region; default from the standard AWS chain (AWS_REGION, profile)."`
	Endpoint       string `yaml:"endpoint" doc:"Endpoint override for a Kinesis-compatible server, e.g. http://127.0.0.1:4567."`
	DeadLetterFile string `yaml:"dead_letter_file" doc:"File that receives records over the 1 MiB limit instead of stopping the pipeline."`
	RejectFile     string `yaml:"reject_file" doc:"File that receives stream records that are not valid change records (consumer)."`
}

// Batch bounds batches.
type Batch struct {
	MaxChanges int           `yaml:"max_changes" default:"10000" doc:"Most changes the source puts in one batch."`
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
	case t.URL == "":
		return "", "", fmt.Errorf("no target: set target (duckdb:PATH or postgres://...) in the config or pass --target")
	}
	return "", "", fmt.Errorf("target %q: want duckdb:PATH or a postgres:// URL", Redact(t.URL))
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
	if _, _, err := c.TableIDs(); err != nil {
		add("%v", err)
	}
	if c.Stream == nil || c.Stream.Role != "producer" {
		if _, _, err := c.Target.Kind(); err != nil {
			add("%v", err)
		}
	}
	if c.Stream != nil {
		switch c.Stream.Role {
		case "producer", "consumer", "both":
		default:
			add("stream.role %q: want producer, consumer or both", c.Stream.Role)
		}
		if c.Stream.Kinesis == nil || c.Stream.Kinesis.Stream == "" {
			add("stream.kinesis.stream is empty: give the Kinesis stream name or ARN")
		}
	}
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
