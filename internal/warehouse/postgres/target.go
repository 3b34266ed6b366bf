package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Options configure a Postgres target. The zero value is usable.
type Options struct {
	// Schema is the target schema every mirrored table lands in. Empty keeps
	// each source table's schema name.
	Schema string
	// Logger receives actionable events (tables created or altered). Nil
	// discards them.
	Logger *slog.Logger
	// ReadOnly opens the target for status, verify and queries: no DDL,
	// not even sluice's state tables (a missing state table reads as empty).
	ReadOnly bool
}

// Target is a Postgres database that mirrored tables are applied to.
type Target struct {
	pool *pgxpool.Pool
	name string // host/database, for messages: never the URL (it may hold a password)
	log  *slog.Logger

	apply  warehouse.Applier
	runner warehouse.Runner[*session] // one writer at a time; fresh tables; redelivery retry
}

var _ pipeline.Target = (*Target)(nil)

// Open connects to the target database and creates sluice's state tables
// (schema _sluice) if they are missing.
func Open(ctx context.Context, url string, opts Options) (*Target, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse Postgres target URL: %w", err)
	}
	name := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres target %s: %w", name, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to Postgres target %s: %w", name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Target{pool: pool, name: name, log: log,
		apply: warehouse.Applier{Dialect: Dialect{}, Schema: opts.Schema, Log: log}}
	t.runner = warehouse.Runner[*session]{Applier: &t.apply, Tx: t.tx, IsConstraint: isUniqueViolation, Where: "Postgres target " + name}
	if opts.ReadOnly {
		return t, nil
	}
	// Several sluice processes may set up one target at once (a pipeline
	// per source, a restart racing a verify): CREATE ... IF NOT EXISTS is
	// not safe against itself, so they take turns.
	err = t.tx(ctx, func(s *session) error {
		if err := s.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('sluice state setup'))"); err != nil {
			return err
		}
		return t.apply.Setup(ctx, s)
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("set up sluice state in Postgres target %s: %w", name, err)
	}
	return t, nil
}

// Close closes the connections.
func (t *Target) Close() error {
	t.pool.Close()
	return nil
}

// Pool is the connection pool, for read-only queries (status, verify).
func (t *Target) Pool() *pgxpool.Pool { return t.pool }

// TableName is the target table a source table is mirrored into.
func (t *Target) TableName(source change.TableID) change.TableID { return t.apply.Target(source) }

// State implements pipeline.Target.
func (t *Target) State(ctx context.Context) (map[change.TableID]change.TableState, error) {
	rows, err := readState(ctx, t.pool)
	if err != nil {
		return nil, fmt.Errorf("read state from Postgres target %s: %w", t.name, err)
	}
	out := make(map[change.TableID]change.TableState, len(rows))
	for id, r := range rows {
		out[id] = r.State
	}
	return out, nil
}

// Reset implements pipeline.Target: drops and recreates the table from the
// schema and forgets its state, in one transaction.
func (t *Target) Reset(ctx context.Context, tbl *change.Table) error { return t.runner.Reset(ctx, tbl) }

// Apply implements pipeline.Target: the batch is merged in one transaction
// together with each table's new state (and the batch's stream marks), and
// durable on return.
func (t *Target) Apply(ctx context.Context, b *change.Batch) error {
	return t.runner.Apply(ctx, b, warehouse.ApplyOptions{Mode: warehouse.ModeReplication, Marks: b.Marks})
}

// ApplyStream applies a batch read from a stream, with no per-table position
// filtering (a stream's shards are separate orders), and stores its marks
// (b.Marks) in the same transaction, refusing it with a
// *warehouse.FenceError when a fenced mark is passed (see
// warehouse.StreamMark.Below). A table that does not exist yet is created
// from the changes' schema. warehouse.StreamTarget makes it a pipeline's Apply.
func (t *Target) ApplyStream(ctx context.Context, b *change.Batch) error {
	return t.runner.Apply(ctx, b, warehouse.ApplyOptions{Mode: warehouse.ModeStream, Marks: b.Marks})
}

// StreamMarks returns one stream's checkpoints: shard id -> sequence number.
func (t *Target) StreamMarks(ctx context.Context, stream string) (map[string]string, error) {
	out, err := readMarks(ctx, t.pool, stream)
	if err != nil {
		return nil, fmt.Errorf("read stream checkpoints from Postgres target %s: %w", t.name, err)
	}
	return out, nil
}

func readMarks(ctx context.Context, q Querier, stream string) (map[string]string, error) {
	rows, err := q.Query(ctx, warehouse.SelectMarksSQL(stream))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var shard, seq string
	_, err = pgx.ForEachRow(rows, []any{&shard, &seq}, func() error { out[shard] = seq; return nil })
	return out, err
}

// Checksums returns, per bucket of the key space, the row count and an
// order-independent checksum over every column of the mirrored table.
func (t *Target) Checksums(ctx context.Context, tbl *change.Table, buckets int) ([]warehouse.Bucket, error) {
	out, err := Checksums(ctx, t.pool, t.mirrored(tbl), buckets)
	if err != nil {
		return nil, fmt.Errorf("in Postgres target %s: %w", t.name, err)
	}
	return out, nil
}

// BucketKeys returns the rows of one bucket of the mirrored table.
func (t *Target) BucketKeys(ctx context.Context, tbl *change.Table, buckets, id, limit int) ([]warehouse.RowHash, error) {
	out, err := BucketKeys(ctx, t.pool, t.mirrored(tbl), buckets, id, limit)
	if err != nil {
		return nil, fmt.Errorf("in Postgres target %s: %w", t.name, err)
	}
	return out, nil
}

// mirrored is tbl renamed to the target table it is mirrored into.
func (t *Target) mirrored(tbl *change.Table) *change.Table {
	c := *tbl
	id := t.apply.Target(tbl.ID())
	c.Schema, c.Name = id.Schema, id.Name
	return &c
}

// tx runs fn in one transaction, committing on success.
func (t *Target) tx(ctx context.Context, fn func(s *session) error) error {
	tx, err := t.pool.Begin(ctx)
	if err != nil {
		return withHint(err)
	}
	if err := fn(&session{tx: tx}); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return withHint(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return withHint(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// session is one Postgres transaction as the shared apply sees it.
type session struct {
	tx  pgx.Tx
	buf bytes.Buffer
}

func (s *session) Exec(ctx context.Context, q string) error {
	_, err := s.tx.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
	return err
}

func (s *session) Load(ctx context.Context, stage string, tbl *change.Table, rows []warehouse.Row) error {
	s.buf.Reset()
	b := s.buf.AvailableBuffer()
	var err error
	for _, r := range rows {
		if b, err = appendCopyRow(b, tbl, r); err != nil {
			return err
		}
	}
	cols := []string{change.QuoteIdent(warehouse.StageOp), change.QuoteIdent(warehouse.StageUnchanged)}
	for _, c := range tbl.Columns {
		cols = append(cols, change.QuoteIdent(c.Name))
	}
	q := "COPY " + Dialect{}.StageName(stage) + " (" + joinComma(cols) + ") FROM STDIN"
	if _, err := s.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b), q); err != nil {
		return &warehouse.StmtError{Table: tbl.ID(), SQL: q, Err: err}
	}
	if cap(b) <= 64<<20 {
		s.buf = *bytes.NewBuffer(b[:0]) // keep the buffer for the next segment
	}
	return nil
}

var _ warehouse.DirectLoader = (*session)(nil)

// LoadDirect implements warehouse.DirectLoader: COPY straight into the
// target table (a duplicate key fails the transaction, and the target
// retries the batch with a full merge).
func (s *session) LoadDirect(ctx context.Context, target change.TableID, tbl *change.Table, rows []warehouse.Row) error {
	s.buf.Reset()
	b := s.buf.AvailableBuffer()
	var err error
	for _, r := range rows {
		if b, err = appendCopyValues(b, tbl, r); err != nil {
			return err
		}
	}
	cols := make([]string, len(tbl.Columns))
	for i, c := range tbl.Columns {
		cols[i] = change.QuoteIdent(c.Name)
	}
	q := "COPY " + target.Quoted() + " (" + joinComma(cols) + ") FROM STDIN"
	if _, err := s.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b), q); err != nil {
		return &warehouse.StmtError{Table: target, SQL: q, Err: err}
	}
	if cap(b) <= 64<<20 {
		s.buf = *bytes.NewBuffer(b[:0])
	}
	return nil
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(x)
	}
	return b.String()
}

func (s *session) TableColumns(ctx context.Context, id change.TableID) ([]string, bool, error) {
	rows, err := s.tx.Query(ctx, `SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, id.Quoted())
	if err != nil {
		return nil, false, err
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return cols, len(cols) > 0, err
}

func (s *session) SchemaExists(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := s.tx.QueryRow(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, change.QuoteIdent(name)).Scan(&ok)
	return ok, err
}

func (s *session) ReadState(ctx context.Context) (map[change.TableID]warehouse.StateRow, error) {
	return readState(ctx, s.tx)
}

func (s *session) ReadMarks(ctx context.Context, stream string) (map[string]string, error) {
	return readMarks(ctx, s.tx, stream)
}

// Querier is what the free functions need of a connection: *pgx.Conn,
// *pgxpool.Pool and pgx.Tx all have it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readState(ctx context.Context, q Querier) (map[change.TableID]warehouse.StateRow, error) {
	out, err := readStateRows(ctx, q)
	// A target that sluice never applied to has no state table yet
	// (read-only opens create nothing): it holds no table.
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return map[change.TableID]warehouse.StateRow{}, nil
	}
	return out, err
}

func readStateRows(ctx context.Context, q Querier) (map[change.TableID]warehouse.StateRow, error) {
	rows, err := q.Query(ctx, warehouse.SelectStateSQL())
	if err != nil {
		return nil, err
	}
	out := map[change.TableID]warehouse.StateRow{}
	var r warehouse.StateRow
	var commit, lsn int64
	var shape *string
	_, err = pgx.ForEachRow(rows, []any{&r.ID.Schema, &r.ID.Name, &r.State.Snapshotted, &commit, &lsn, &shape}, func() error {
		row := r
		row.State.Applied = change.Position{CommitLSN: change.LSN(commit), LSN: change.LSN(lsn)}
		if shape != nil {
			var err error
			if row.Shape, err = warehouse.DecodeShape(row.ID, *shape); err != nil {
				return err
			}
		}
		out[row.ID] = row
		return nil
	})
	return out, err
}

// isUniqueViolation reports a unique-key violation (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
