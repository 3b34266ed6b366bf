package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

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

	// Kept across transactions by the one writer (the runner): the COPY
	// buffer and the tables that a value sent back to text COPY (see
	// copybin.go).
	buf      []byte
	textCopy map[change.TableID]bool
	copies   struct{ binary, text int } // COPYs run, for tests
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

// tx runs fn in one transaction, committing on success. A binary COPY
// that met a value its encoder does not read aborted the transaction: fn
// runs again in a new one, with text COPY for that table from then on.
func (t *Target) tx(ctx context.Context, fn func(s *session) error) error {
	for {
		err := t.tx1(ctx, fn)
		var be *binaryError
		if !errors.As(err, &be) || t.textCopy[be.table] {
			return err
		}
		if t.textCopy == nil {
			t.textCopy = map[change.TableID]bool{}
		}
		t.textCopy[be.table] = true
		t.log.Info("binary COPY refused a value: text COPY for this table", "table", be.table.String(), "error", be.Error())
	}
}

func (t *Target) tx1(ctx context.Context, fn func(s *session) error) error {
	tx, err := t.pool.Begin(ctx)
	if err != nil {
		return withHint(err)
	}
	if err := fn(&session{tx: tx, t: t}); err != nil {
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
	tx pgx.Tx
	t  *Target
}

func (s *session) Exec(ctx context.Context, q string) error {
	_, err := s.tx.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
	return err
}

func (s *session) Load(ctx context.Context, stage string, tbl *change.Table, rows []warehouse.Row) error {
	cols := []string{change.QuoteIdent(warehouse.StageOp), change.QuoteIdent(warehouse.StageUnchanged)}
	for _, c := range tbl.Columns {
		cols = append(cols, change.QuoteIdent(c.Name))
	}
	rel := Dialect{}.StageName(stage)
	q := "COPY " + rel + " (" + joinComma(cols) + ") FROM STDIN"
	bin, err := s.binaryColumns(ctx, rel, tbl, true)
	if err != nil {
		return &warehouse.StmtError{Table: tbl.ID(), SQL: "look up the column types of " + rel, Err: err}
	}
	if bin != nil {
		return s.copyBinary(ctx, tbl.ID(), tbl.ID(), q, bin, rows)
	}
	b := s.t.buf[:0]
	for _, r := range rows {
		if b, err = appendCopyRow(b, tbl, r); err != nil {
			return err
		}
	}
	return s.copyText(ctx, tbl.ID(), q, b)
}

var _ warehouse.DirectLoader = (*session)(nil)

// LoadDirect implements warehouse.DirectLoader: COPY straight into the
// target table (a duplicate key fails the transaction, and the target
// retries the batch with a full merge).
func (s *session) LoadDirect(ctx context.Context, target change.TableID, tbl *change.Table, rows []warehouse.Row) error {
	cols := make([]string, len(tbl.Columns))
	for i, c := range tbl.Columns {
		cols[i] = change.QuoteIdent(c.Name)
	}
	q := "COPY " + target.Quoted() + " (" + joinComma(cols) + ") FROM STDIN"
	bin, err := s.binaryColumns(ctx, target.Quoted(), tbl, false)
	if err != nil {
		return &warehouse.StmtError{Table: target, SQL: "look up the column types of " + target.Quoted(), Err: err}
	}
	if bin != nil {
		return s.copyBinary(ctx, target, tbl.ID(), q, bin, rows)
	}
	b := s.t.buf[:0]
	for _, r := range rows {
		if b, err = appendCopyValues(b, tbl, r); err != nil {
			return err
		}
	}
	return s.copyText(ctx, target, q, b)
}

// binaryColumns returns the columns of a binary COPY of tbl's rows into
// relation rel (with the op and unchanged mask first when staged), or nil
// when some column has no binary encoder for the type it has in rel.
func (s *session) binaryColumns(ctx context.Context, rel string, tbl *change.Table, staged bool) ([]binaryCol, error) {
	if s.t.textCopy[tbl.ID()] {
		return nil, nil
	}
	var types map[string]uint32
	if staged {
		// Staging tables are sluice's own: their types are known.
		types = stageTypes(tbl)
	} else {
		var err error
		if types, err = columnTypes(ctx, s.tx, rel); err != nil {
			return nil, err
		}
	}
	var out []binaryCol
	if staged {
		out = append(out, binaryCol{name: warehouse.StageOp, value: -1}, binaryCol{name: warehouse.StageUnchanged, value: -2})
	}
	for i, c := range tbl.Columns {
		kind := c.Type.Kind
		enc := binaryEncoder(types[c.Name], kind)
		if enc == nil {
			return nil, nil
		}
		out = append(out, binaryCol{name: c.Name, value: i, enc: enc, key: c.Key || tbl.Keyless()})
	}
	if staged && (types[warehouse.StageOp] != oidVarchar || types[warehouse.StageUnchanged] != oidVarchar) {
		return nil, nil
	}
	return out, nil
}

// stageTypes maps the columns of tbl's staging table (CreateStageSQL with
// Dialect.StageType) to the OIDs of their types, 0 for a type without a
// binary encoder.
func stageTypes(tbl *change.Table) map[string]uint32 {
	out := map[string]uint32{warehouse.StageOp: oidVarchar, warehouse.StageUnchanged: oidVarchar}
	for _, c := range tbl.Columns {
		out[c.Name] = builtinOID(Dialect{}.StageType(warehouse.TypeOf(c)))
	}
	return out
}

// builtinOID is the OID of a built-in type named as format_type names it
// (modifiers ignored), among those with a binary encoder; 0 for others.
func builtinOID(name string) uint32 {
	if i := strings.IndexByte(name, '('); i >= 0 {
		if j := strings.IndexByte(name[i:], ')'); j >= 0 {
			name = strings.TrimSpace(name[:i]) + name[i+j+1:]
		}
	}
	return builtinOIDs[name]
}

var builtinOIDs = map[string]uint32{
	"smallint": oidInt2, "integer": oidInt4, "bigint": oidInt8, "boolean": oidBool, "real": oidFloat4,
	"double precision": oidFloat8, "numeric": oidNumeric, "text": oidText, "character varying": oidVarchar,
	"bytea": oidBytea, "date": oidDate, "timestamp without time zone": oidTimestamp, "timestamp": oidTimestamp,
	"timestamp with time zone": oidTimestampTZ, "uuid": oidUUID, "json": oidJSON, "jsonb": oidJSONB,
}

// columnTypes maps the columns of a relation to their type OIDs.
func columnTypes(ctx context.Context, q Querier, rel string) (map[string]uint32, error) {
	rows, err := q.Query(ctx, `SELECT attname, atttypid FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, rel)
	if err != nil {
		return nil, err
	}
	out := map[string]uint32{}
	var name string
	var oid uint32
	_, err = pgx.ForEachRow(rows, []any{&name, &oid}, func() error { out[name] = oid; return nil })
	return out, err
}

// copyBinary runs a binary COPY of rows; source names the source table
// whose text COPY fallback a refused value asks for.
func (s *session) copyBinary(ctx context.Context, target, source change.TableID, q string, cols []binaryCol, rows []warehouse.Row) error {
	q += " (FORMAT binary)"
	r := &binaryRows{}
	r.reset(source, cols, rows, s.t.buf)
	s.t.copies.binary++
	_, err := s.tx.Conn().PgConn().CopyFrom(ctx, r, q)
	var pe *pgconn.PgError
	if err != nil && !errors.As(err, &pe) {
		// The connection failed: pgconn may return before its sending
		// goroutine stopped reading r, so r is left alone.
		s.t.buf = nil
		return &warehouse.StmtError{Table: target, SQL: q, Err: err}
	}
	if cap(r.buf) <= 64<<20 {
		s.t.buf = r.buf[:0]
	}
	if r.err != nil {
		return r.err // the transaction is aborted: Target.tx runs it again in text
	}
	if pe != nil && pe.Code == "22P03" { // invalid_binary_representation
		return &binaryError{table: source, err: err}
	}
	if err != nil {
		return &warehouse.StmtError{Table: target, SQL: q, Err: err}
	}
	return nil
}

func (s *session) copyText(ctx context.Context, target change.TableID, q string, b []byte) error {
	s.t.copies.text++
	_, err := s.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b), q)
	if cap(b) <= 64<<20 {
		s.t.buf = b[:0] // keep the buffer for the next segment
	}
	if err != nil {
		return &warehouse.StmtError{Table: target, SQL: q, Err: err}
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
