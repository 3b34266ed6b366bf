package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Options configure a DuckDB target. The zero value is usable.
type Options struct {
	// Schema is the DuckDB schema every mirrored table lands in. Empty keeps
	// each source table's schema name (a source public.users becomes
	// public.users here).
	Schema string
	// ReadOnly opens the database file read-only: State, Checksums and
	// queries work, Apply and Reset fail. For inspecting a file that no
	// sluice process is writing.
	ReadOnly bool
	// Logger receives actionable events (tables created or altered). Nil
	// discards them.
	Logger *slog.Logger
}

// Target is a DuckDB database that mirrored tables are applied to.
type Target struct {
	db   *sql.DB
	path string
	opts Options
	log  *slog.Logger

	apply  warehouse.Applier
	runner warehouse.Runner[*session] // one writer at a time; fresh tables; redelivery retry

	directRows atomic.Int64 // rows appended without staging, for tests
}

var _ pipeline.Target = (*Target)(nil)

// Open opens (or creates) the DuckDB database at path (":memory:" for a
// database in memory) and creates sluice's state tables in it.
func Open(ctx context.Context, path string, opts Options) (*Target, error) {
	if !opts.ReadOnly && path != ":memory:" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := create(ctx, path, opts); err != nil {
				return nil, err
			}
		}
	}
	return openFile(ctx, path, opts)
}

func openFile(ctx context.Context, path string, opts Options) (*Target, error) {
	dsn := path
	if path == ":memory:" {
		dsn = ""
	}
	if opts.ReadOnly {
		dsn += "?" + url.Values{"access_mode": {"read_only"}}.Encode()
	}
	db, err := sql.Open("duckdb", dsn)
	if err != nil {
		return nil, fmt.Errorf("open DuckDB database %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open DuckDB database %s: %w%s", path, err, hint(err))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Target{db: db, path: path, opts: opts, log: log,
		apply: warehouse.Applier{Dialect: Dialect{}, Schema: opts.Schema, Log: log}}
	t.runner = warehouse.Runner[*session]{Applier: &t.apply, Tx: t.tx, Begin: t.begin, IsConstraint: isConstraint, Where: "DuckDB " + path}
	if !opts.ReadOnly {
		err := t.tx(ctx, func(s *session) error { return t.apply.Setup(ctx, s) })
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("set up sluice state in DuckDB database %s: %w", path, err)
		}
	}
	return t, nil
}

// create makes a new database file with sluice's state tables under a
// temporary name and renames it into place once it is whole: a process
// killed while DuckDB writes a new file's header would otherwise leave a
// file that is "not a valid DuckDB database" at the target's path, and
// refusing it for ever (or deleting a file at a user's path) is wrong.
func create(ctx context.Context, path string, opts Options) error {
	tmp := path + ".creating"
	_ = os.Remove(tmp) // an earlier attempt's, never anybody's data
	_ = os.Remove(tmp + ".wal")
	opts.Logger = nil
	t, err := openFile(ctx, tmp, opts)
	if err != nil {
		return err
	}
	if err := t.db.Close(); err != nil {
		return fmt.Errorf("create DuckDB database %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("create DuckDB database %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Close closes the database. Snapshot rows still carried uncommitted (see
// warehouse.Runner.Apply) are rolled back: their tables are not marked
// snapshotted, so the next run snapshots them again.
func (t *Target) Close() error {
	t.runner.Close()
	return t.db.Close()
}

// DB is the database handle, for read-only queries from the admin endpoint
// of the running process (DuckDB allows one writing process, so other
// commands go through it). Writing through it bypasses sluice's state.
func (t *Target) DB() *sql.DB { return t.db }

// TableName is the DuckDB table a source table is mirrored into.
func (t *Target) TableName(source change.TableID) change.TableID { return t.apply.Target(source) }

// State implements pipeline.Target.
func (t *Target) State(ctx context.Context) (map[change.TableID]change.TableState, error) {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("read state from DuckDB %s: %w", t.path, err)
	}
	defer conn.Close()
	rows, err := (&session{conn: conn}).ReadState(ctx)
	if err != nil {
		return nil, fmt.Errorf("read state from DuckDB %s: %w", t.path, err)
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
	out, err := readMarks(ctx, t.db, stream)
	if err != nil {
		return nil, fmt.Errorf("read stream checkpoints from DuckDB %s: %w", t.path, err)
	}
	return out, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readMarks(ctx context.Context, q queryer, stream string) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, warehouse.SelectMarksSQL(stream))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var shard, seq string
		if err := rows.Scan(&shard, &seq); err != nil {
			return nil, err
		}
		out[shard] = seq
	}
	return out, rows.Err()
}

// Checksums returns, per bucket of the key space, the row count and an
// order-independent checksum over every column, computed inside DuckDB,
// comparable with postgres.Checksums over the source table.
func (t *Target) Checksums(ctx context.Context, tbl *change.Table, buckets int) ([]warehouse.Bucket, error) {
	if buckets < 1 {
		return nil, fmt.Errorf("checksum %s: buckets must be at least 1", tbl.ID())
	}
	q := warehouse.ChecksumSQL(Dialect{}, t.apply.Target(tbl.ID()), tbl, buckets)
	rows, err := t.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("checksum %s in DuckDB %s: %w", tbl.ID(), t.path, err)
	}
	defer rows.Close()
	var got []warehouse.Bucket
	for rows.Next() {
		var b warehouse.Bucket
		if err := rows.Scan(&b.ID, &b.Rows, &b.Sum); err != nil {
			return nil, fmt.Errorf("checksum %s in DuckDB %s: %w", tbl.ID(), t.path, err)
		}
		got = append(got, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checksum %s in DuckDB %s: %w", tbl.ID(), t.path, err)
	}
	return warehouse.FillBuckets(got, buckets), nil
}

// BucketKeys returns the rows of one bucket (key and row hash), at most
// limit, for showing the first mismatching keys (see warehouse.DiffRows).
func (t *Target) BucketKeys(ctx context.Context, tbl *change.Table, buckets, id, limit int) ([]warehouse.RowHash, error) {
	q := warehouse.BucketKeysSQL(Dialect{}, t.apply.Target(tbl.ID()), tbl, buckets, id, limit)
	rows, err := t.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list bucket %d of %s in DuckDB %s: %w", id, tbl.ID(), t.path, err)
	}
	defer rows.Close()
	var out []warehouse.RowHash
	for rows.Next() {
		vals := make([]sql.NullString, len(tbl.Identity())+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("list bucket %d of %s in DuckDB %s: %w", id, tbl.ID(), t.path, err)
		}
		r := warehouse.RowHash{Hash: vals[len(vals)-1].String}
		for _, v := range vals[:len(vals)-1] {
			r.Key = append(r.Key, v.String)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bucket %d of %s in DuckDB %s: %w", id, tbl.ID(), t.path, err)
	}
	return out, nil
}

// tx runs fn in one transaction on one connection, committing on success.
func (t *Target) tx(ctx context.Context, fn func(s *session) error) error {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return withHint(err)
	}
	s := &session{conn: conn, direct: &t.directRows}
	if err := fn(s); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return withHint(err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return withHint(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// begin opens a transaction that the runner commits later (carried
// snapshot rows). Postgres targets do not carry: a commit there costs a
// WAL flush, while DuckDB's commit of appended rows costs about as much as
// appending them (measured: 1M rows in 50,000-row transactions 4.9 s, of
// which 2.8 s commits; in one transaction 3.0 s).
func (t *Target) begin(ctx context.Context) (*warehouse.OpenTx[*session], error) {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return nil, withHint(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		conn.Close()
		return nil, withHint(err)
	}
	return &warehouse.OpenTx[*session]{
		Session: &session{conn: conn, direct: &t.directRows},
		Commit: func(ctx context.Context) error {
			_, err := conn.ExecContext(ctx, "COMMIT")
			if err != nil {
				return withHint(fmt.Errorf("commit: %w", err))
			}
			conn.Close()
			return nil
		},
		Rollback: func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
		},
	}, nil
}

// session is one DuckDB transaction as the shared apply sees it.
type session struct {
	conn   *sql.Conn
	direct *atomic.Int64 // counts rows appended directly; may be nil
}

func (s *session) Exec(ctx context.Context, q string) error {
	_, err := s.conn.ExecContext(ctx, q)
	return err
}

func (s *session) Load(ctx context.Context, stage string, tbl *change.Table, rows []warehouse.Row) error {
	types := make([]warehouse.ColType, len(tbl.Columns))
	for i, c := range tbl.Columns {
		types[i] = warehouse.TypeOf(c)
	}
	return s.conn.Raw(func(dc any) error {
		conn, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("unexpected DuckDB driver connection %T", dc)
		}
		app, err := duckdb.NewAppender(conn, "temp", "main", stage)
		if err != nil {
			return fmt.Errorf("open appender: %w", err)
		}
		vals := make([]driver.Value, len(tbl.Columns)+2)
		for _, r := range rows {
			if err := ctx.Err(); err != nil {
				app.Close()
				return err
			}
			clear(vals)
			vals[0] = string(rune(r.Op))
			if r.Delete && !tbl.Keyless() {
				for _, k := range tbl.Key {
					if vals[k+2], err = stageValue(tbl, k, types[k], r.Values[k]); err != nil {
						app.Close()
						return err
					}
				}
			} else {
				if m, ok := warehouse.UnchangedMask(r.Values); ok {
					vals[1] = m
				}
				for i, v := range r.Values {
					if i >= len(types) {
						break
					}
					if vals[i+2], err = stageValue(tbl, i, types[i], v); err != nil {
						app.Close()
						return err
					}
				}
			}
			if err := app.AppendRow(vals...); err != nil {
				app.Close()
				return fmt.Errorf("append row: %w", err)
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("flush appender: %w", err)
		}
		return nil
	})
}

func (s *session) TableColumns(ctx context.Context, id change.TableID) ([]string, bool, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position`, id.Schema, id.Name)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, false, err
		}
		cols = append(cols, c)
	}
	return cols, len(cols) > 0, rows.Err()
}

func (s *session) SchemaExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.conn.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.schemata
WHERE catalog_name = current_database() AND schema_name = ?`, name).Scan(&n)
	return n > 0, err
}

func (s *session) ReadMarks(ctx context.Context, stream string) (map[string]string, error) {
	return readMarks(ctx, s.conn, stream)
}

func (s *session) ReadState(ctx context.Context) (map[change.TableID]warehouse.StateRow, error) {
	rows, err := s.conn.QueryContext(ctx, warehouse.SelectStateSQL())
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return map[change.TableID]warehouse.StateRow{}, nil // a read-only file sluice never wrote to
		}
		return nil, err
	}
	defer rows.Close()
	out := map[change.TableID]warehouse.StateRow{}
	for rows.Next() {
		var r warehouse.StateRow
		var commit, lsn int64
		var shape sql.NullString
		if err := rows.Scan(&r.ID.Schema, &r.ID.Name, &r.State.Snapshotted, &commit, &lsn, &shape); err != nil {
			return nil, err
		}
		r.State.Applied = change.Position{CommitLSN: change.LSN(commit), LSN: change.LSN(lsn)}
		if shape.Valid {
			if r.Shape, err = warehouse.DecodeShape(r.ID, shape.String); err != nil {
				return nil, err
			}
		}
		out[r.ID] = r
	}
	return out, rows.Err()
}

func isConstraint(err error) bool {
	var de *duckdb.Error
	if errors.As(err, &de) && de.Type == duckdb.ErrorTypeConstraint {
		return true
	}
	msg := err.Error()
	// An appender reports a duplicate key as a plain error at close.
	return strings.Contains(msg, "Constraint Error") || strings.Contains(msg, "violates primary key constraint")
}
