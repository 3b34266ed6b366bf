package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/verify"
	"github.com/sluice-dev/sluice/internal/warehouse/redshift"
)

// A Redshift target is not a warehouse target: sluice never writes rows
// into it. Redshift reads the Kinesis stream or the Kafka topic itself (the
// streaming view), and sluice only creates the objects (setup), merges what
// landed (the merge schedule of Run) and reads checksums (verify). This
// file holds the application's part of all of it; cmd/sluice prints.

// TeardownRedshift removes what sluice created in Redshift (only what
// setup recorded; the mirrored tables stay) and returns what it removed,
// as "kind id", in the order removed.
func TeardownRedshift(ctx context.Context, c *config.Config) ([]string, error) {
	p, err := RedshiftPlan(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		return nil, fmt.Errorf("tear down in Redshift: %w", err)
	}
	defer closeConn()
	in := redshift.CatalogInspector{Conn: conn, Dialect: p.Config.Dialect}
	if err := p.Inspect(ctx, in); err != nil {
		return nil, fmt.Errorf("tear down in Redshift: %w", err)
	}
	before := map[string]bool{}
	for _, o := range p.Objects {
		if o.State == redshift.Exists {
			before[o.Kind.String()+" "+o.ID()] = true
		}
	}
	if err := redshift.Teardown(ctx, conn, p, redshift.TeardownOptions{}, discardLog()); err != nil {
		return nil, fmt.Errorf("tear down in Redshift: %w", err)
	}
	if err := p.Inspect(ctx, in); err != nil {
		return nil, fmt.Errorf("tear down in Redshift: %w", err)
	}
	var removed []string
	for i := len(p.Objects) - 1; i >= 0; i-- {
		o := p.Objects[i]
		if id := o.Kind.String() + " " + o.ID(); before[id] && o.State == redshift.Missing {
			removed = append(removed, id)
		}
	}
	return removed, nil
}

// SetupRedshift creates in Redshift what the plan shows as missing and
// returns the plan, its objects marked as they were before: Missing ones
// were created.
func SetupRedshift(ctx context.Context, c *config.Config) (*redshift.Plan, error) {
	p, err := RedshiftPlan(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		return nil, err
	}
	defer closeConn()
	if err := redshift.Setup(ctx, conn, p, discardLog()); err != nil {
		return nil, err
	}
	return p, nil
}

// MergeRedshift runs one merge of every table, once setup has run, and
// returns the records each had pending before it and how long it took.
func MergeRedshift(ctx context.Context, c *config.Config) (map[change.TableID]int64, time.Duration, error) {
	p, err := RedshiftPlan(ctx, c, nil)
	if err != nil {
		return nil, 0, err
	}
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		return nil, 0, err
	}
	defer closeConn()
	if err := CheckSetUp(ctx, c, conn, p); err != nil {
		return nil, 0, err
	}
	pending, err := redshift.Pending(ctx, conn, p)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if err := redshift.Merge(ctx, conn, p); err != nil {
		return nil, 0, err
	}
	return pending, time.Since(start), nil
}

// InspectRedshift marks the plan's objects as they are in Redshift,
// bounded in time so an unreachable Redshift does not hang plan.
func InspectRedshift(ctx context.Context, c *config.Config, p *redshift.Plan) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		return err
	}
	defer closeConn()
	return p.Inspect(ctx, redshift.CatalogInspector{Conn: conn, Dialect: p.Config.Dialect})
}

// RedshiftPlan builds the plan from the config and the source tables'
// schemas (described from the source when tables is nil): the mirrored
// tables and the views' tables. It touches no Redshift.
func RedshiftPlan(ctx context.Context, c *config.Config, tables []*change.Table) (*redshift.Plan, error) {
	if tables == nil {
		var err error
		if tables, err = DescribeTables(ctx, c); err != nil {
			return nil, err
		}
	}
	// Redshift merges the views' output tables like mirrored ones (the
	// producer puts their changes on the stream), and not the tables
	// that only feed views.
	tables, err := targetTables(ctx, c, tables)
	if err != nil {
		return nil, err
	}
	r := c.Redshift // Validate made sure it is set for a Redshift target
	rc := redshift.Config{
		Region:        r.Region,
		AccountID:     r.Account,
		RoleARN:       r.RoleARN,
		ChainRoleARNs: r.ChainRoleARNs,
		KMSKeyARN:     r.KMSKeyARN,
		// The streaming view refreshes with the parameter group's
		// enable_case_sensitive_identifier, so only the user can say it is on.
		CaseSensitiveParameterGroup: r.CaseSensitiveParameterGroup,
		ExternalSchema:              r.ExternalSchema,
		TargetSchema:                r.TargetSchema,
		Tables:                      tables,
		Dialect:                     redshiftDialect(c),
	}
	if rc.TargetSchema == "" {
		rc.TargetSchema = c.Target.Schema
	}
	if k := c.Stream.Kafka; k != nil {
		// Redshift reads the topic itself: the producer's brokers are not
		// necessarily the address Redshift reaches (kafka_uri, or MSK's
		// own, from the cluster ARN).
		rc.Kafka = &redshift.KafkaSource{
			Topic: k.Topic, ClusterARN: r.MSKClusterARN, URI: r.KafkaURI, Authentication: r.KafkaAuthentication,
			CertificateARN: r.KafkaCertificateARN, SecretARN: r.KafkaSecretARN,
		}
		p, err := redshift.NewPlan(rc)
		if err != nil {
			return nil, fmt.Errorf("plan the Redshift mirror: %w", err)
		}
		return p, nil
	}
	stream := c.Stream.Kinesis.Stream
	rc.StreamName = stream
	if strings.HasPrefix(stream, "arn:") {
		rc.StreamARN = stream
		rc.StreamName = stream[strings.LastIndex(stream, "/")+1:]
	}
	if rc.Region == "" {
		rc.Region = c.Stream.Kinesis.Region
	}
	if rc.Region == "" && rc.StreamARN == "" {
		rc.Region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
		if rc.Region == "" {
			return nil, fmt.Errorf("no AWS region for the stream %s: set redshift.region or stream.kinesis.region, give the stream as its ARN, or set AWS_REGION", stream)
		}
	}
	p, err := redshift.NewPlan(rc)
	if err != nil {
		return nil, fmt.Errorf("plan the Redshift mirror: %w", err)
	}
	return p, nil
}

// redshiftRefuse is the stream sink's check (kinesis.SinkConfig.Refuse,
// kafka.SinkConfig.Refuse) for a stream Redshift reads: records Redshift's JSON_PARSE would refuse
// (a string over 65,535 bytes, a key twice in an object) are set aside in
// the dead-letter file, or stop the producer, instead of stopping the
// merge later. Nil for other streams.
func redshiftRefuse(c *config.Config) func(*change.Change, []byte) string {
	if !c.IsRedshift() && c.Redshift == nil {
		return nil
	}
	return redshift.RefuseRecord
}

func redshiftDialect(c *config.Config) redshift.Dialect {
	if c.Redshift != nil && c.Redshift.Dialect == "postgres" {
		return redshift.Postgres
	}
	return redshift.Redshift
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// OpenRedshift connects to Redshift: over the Data API when configured,
// else over the Postgres wire protocol Redshift speaks. The connection is
// for one goroutine at a time.
func OpenRedshift(ctx context.Context, c *config.Config, p *redshift.Plan) (redshift.Conn, func(), error) {
	d := p.Config.Dialect
	if api := c.Redshift.DataAPI; api != nil {
		// Refused up front, naming the table: the Data API takes no
		// statement over 100 KB, and a wide table's merge has some.
		if err := p.CheckDataAPI(); err != nil {
			return nil, nil, err
		}
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(p.Config.Region))
		if err != nil {
			return nil, nil, fmt.Errorf("load AWS configuration (credentials and region) for the Redshift Data API: %w", err)
		}
		conn, err := redshift.NewDataAPI(redshiftdata.NewFromConfig(cfg), redshift.DataAPITarget{
			ClusterIdentifier: api.ClusterIdentifier, WorkgroupName: api.WorkgroupName,
			Database: api.Database, SecretARN: api.SecretARN, DbUser: api.DbUser,
		}, d)
		if err != nil {
			return nil, nil, err
		}
		return conn, func() {}, nil
	}
	u, host, err := redshiftPgURL(c.Target.URL)
	if err != nil {
		return nil, nil, err
	}
	pc, err := pgx.ParseConfig(u)
	if err != nil {
		return nil, nil, fmt.Errorf("target %s: %w", config.Redact(c.Target.URL), err)
	}
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 15 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to Redshift at %s: %w\n(check the target URL, that the cluster accepts connections from here: security group, publicly accessible or a VPN, or reach it through redshift.data_api)", host, err)
	}
	closeConn := func() { _ = conn.Close(context.Background()) }
	pg, err := redshift.NewPgConn(ctx, conn, d)
	if err != nil {
		closeConn()
		return nil, nil, fmt.Errorf("connect to Redshift at %s: %w", host, err)
	}
	return pg, closeConn, nil
}

// redshiftPgURL turns redshift://user:password@host[:5439]/db into the
// postgres:// URL pgx reads, with Redshift's default port.
func redshiftPgURL(target string) (pgURL, host string, err error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "redshift" || u.Host == "" {
		return "", "", fmt.Errorf("target %s: want redshift://user:password@host:5439/database", config.Redact(target))
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "5439")
	}
	u.Scheme = "postgres"
	return u.String(), u.Host, nil
}

// CheckSetUp fails, naming the first missing object, unless setup has run.
func CheckSetUp(ctx context.Context, c *config.Config, conn redshift.Conn, p *redshift.Plan) error {
	if err := p.Inspect(ctx, redshift.CatalogInspector{Conn: conn, Dialect: p.Config.Dialect}); err != nil {
		return err
	}
	for _, o := range p.Objects {
		switch o.State {
		case redshift.Missing:
			return fmt.Errorf("redshift is not set up for pipeline %s: %s %s does not exist: run `sluice setup` with this config first (`sluice plan` shows what it creates)", c.Pipeline, o.Kind, o.ID())
		case redshift.Conflict:
			return fmt.Errorf("redshift: %s %s exists, but %s", o.Kind, o.ID(), o.Problem)
		}
	}
	return nil
}

// lockedConn serialises a Conn between the merge schedule and status.
type lockedConn struct {
	sem  chan struct{}
	conn redshift.Conn
}

func newLockedConn(c redshift.Conn) *lockedConn {
	return &lockedConn{sem: make(chan struct{}, 1), conn: c}
}

var _ redshift.Conn = (*lockedConn)(nil)

func (l *lockedConn) lock(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lockedConn) Exec(ctx context.Context, sql string) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer func() { <-l.sem }()
	return l.conn.Exec(ctx, sql)
}

func (l *lockedConn) ExecTx(ctx context.Context, stmts []string) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer func() { <-l.sem }()
	return l.conn.ExecTx(ctx, stmts)
}

func (l *lockedConn) Query(ctx context.Context, sql string) ([][]*string, error) {
	if err := l.lock(ctx); err != nil {
		return nil, err
	}
	defer func() { <-l.sem }()
	return l.conn.Query(ctx, sql)
}

// redshiftMerger is the merge half of a Redshift pipeline: redshift.Merge
// every merge_interval, with what status shows.
type redshiftMerger struct {
	cfg   *config.Config
	plan  *redshift.Plan
	conn  *lockedConn
	close func()
	log   *slog.Logger

	mu      sync.Mutex
	st      redshiftStatus
	pending map[change.TableID]int64
}

// redshiftStatus is the merge half's part of `sluice status`.
type redshiftStatus struct {
	Every       string           `json:"merge_interval"`
	Merges      int64            `json:"merges"`
	LastMerge   string           `json:"last_merge,omitempty"`
	LastTook    string           `json:"last_merge_took,omitempty"`
	LastError   string           `json:"last_error,omitempty"`
	Pending     map[string]int64 `json:"pending_records"`
	PendingAsOf string           `json:"pending_as_of,omitempty"`
}

// openRedshiftMerger connects, builds the plan from the source tables and
// checks that setup has run, before anything starts.
func openRedshiftMerger(ctx context.Context, c *config.Config, log *slog.Logger) (*redshiftMerger, error) {
	p, err := RedshiftPlan(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		return nil, err
	}
	if err := CheckSetUp(ctx, c, conn, p); err != nil {
		closeConn()
		return nil, err
	}
	return &redshiftMerger{cfg: c, plan: p, conn: newLockedConn(conn), close: closeConn, log: log,
		st: redshiftStatus{Every: c.Redshift.MergeInterval.String()}}, nil
}

func (m *redshiftMerger) Close() { m.close() }

// run merges now and then every interval until ctx ends, keeping a record
// of each run for status. After a merge that succeeded, the records still
// pending are counted while the connection is free.
func (m *redshiftMerger) run(ctx context.Context) error {
	return redshift.Schedule(ctx, m.conn, m.plan, redshift.ScheduleOptions{
		Every:  m.cfg.Redshift.MergeInterval,
		Logger: m.log,
		Ran:    m.ran,
	})
}

func (m *redshiftMerger) ran(ctx context.Context, r redshift.MergeRun) {
	m.mu.Lock()
	m.st.LastMerge = r.Start.UTC().Format(time.RFC3339Nano)
	m.st.LastTook = r.Took.Round(time.Millisecond).String()
	m.st.LastError = ""
	if r.Err != nil {
		m.st.LastError = r.Err.Error()
	} else {
		m.st.Merges++
	}
	m.mu.Unlock()
	if r.Err == nil {
		m.refreshPending(ctx)
	}
}

func (m *redshiftMerger) refreshPending(ctx context.Context) {
	pending, err := redshift.Pending(ctx, m.conn, m.plan)
	if err != nil {
		return // status shows the previous figures with their time
	}
	m.mu.Lock()
	m.pending = pending
	m.st.PendingAsOf = time.Now().UTC().Format(time.RFC3339Nano)
	m.mu.Unlock()
}

// status counts the pending records now when the connection is free within
// a few seconds (a merge may hold it), else shows the last count.
func (m *redshiftMerger) status() redshiftStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	m.refreshPending(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.Pending = map[string]int64{}
	for id, n := range m.pending {
		st.Pending[id.String()] = n
	}
	return st
}

// redshiftStoppedStatus is status's view of a Redshift target when no
// sluice runs: the records waiting for a merge.
func redshiftStoppedStatus(ctx context.Context, c *config.Config) any {
	out := map[string]any{}
	p, err := RedshiftPlan(ctx, c, nil)
	if err != nil {
		out["error"] = err.Error()
		return map[string]any{"redshift": out}
	}
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		out["error"] = err.Error()
		return map[string]any{"redshift": out}
	}
	defer closeConn()
	pending, err := redshift.Pending(ctx, conn, p)
	if err != nil {
		out["error"] = err.Error()
		return map[string]any{"redshift": out}
	}
	pm := map[string]int64{}
	for id, n := range pending {
		pm[id.String()] = n
	}
	out["pending_records"] = pm
	return map[string]any{"redshift": out}
}

// openRedshiftSide is verify's target side for Redshift: the mirror's
// checksums computed inside Redshift, on a connection of verify's own. No
// running sluice can hold Redshift at a source position (the stream and
// the merge are in between), so the note says how much is still pending.
func openRedshiftSide(ctx context.Context, c *config.Config, tables []*change.Table) (verify.Side, func(), string, error) {
	p, err := RedshiftPlan(ctx, c, tables)
	if err != nil {
		return nil, nil, "", err
	}
	conn, closeConn, err := OpenRedshift(ctx, c, p)
	if err != nil {
		return nil, nil, "", err
	}
	note := "compared with Redshift without a common point (changes pass through the stream and the merge): a difference may be changes not merged yet; run verify again after the next merge"
	if pending, err := redshift.Pending(ctx, conn, p); err == nil {
		var total int64
		for _, n := range pending {
			total += n
		}
		if total > 0 {
			note += fmt.Sprintf(" (%d records landed but not merged)", total)
		}
	} else if errors.Is(err, context.Canceled) {
		closeConn()
		return nil, nil, "", err
	}
	return p.VerifySide(conn), closeConn, note, nil
}
