package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// Session is one open transaction in a warehouse, as the shared apply needs it.
type Session interface {
	// Exec runs one statement.
	Exec(ctx context.Context, sql string) error
	// Load bulk-loads rows into the staging table made by CreateStageSQL
	// for t (op, unchanged mask, then t's columns).
	Load(ctx context.Context, stage string, t *change.Table, rows []Row) error
	// TableColumns returns the target table's column names, and false when
	// the table does not exist.
	TableColumns(ctx context.Context, id change.TableID) ([]string, bool, error)
	// SchemaExists reports whether a schema exists.
	SchemaExists(ctx context.Context, name string) (bool, error)
	// ReadState reads the state table.
	ReadState(ctx context.Context) (map[change.TableID]StateRow, error)
	// ReadMarks reads one stream's marks (shard → sequence), inside the
	// transaction.
	ReadMarks(ctx context.Context, stream string) (map[string]string, error)
}

// DirectLoader is an optional Session ability: bulk-load rows straight into
// the target table, for a segment whose every row is an insert of a key
// known new (no staging table, no merge statement). It returns ErrNoDirect,
// having written nothing, when it cannot load these rows directly; the
// rows then go through the staging table.
type DirectLoader interface {
	LoadDirect(ctx context.Context, target change.TableID, t *change.Table, rows []Row) error
}

// ErrNoDirect is returned by a DirectLoader that leaves the rows to staging.
var ErrNoDirect = errors.New("rows cannot be loaded directly")

// StmtError is a statement the warehouse rejected, with the table it was for.
type StmtError struct {
	Table change.TableID // the target table; zero for sluice's own tables
	SQL   string
	Err   error
	Hint  string // what to do about it, filled in by the dialect package
}

func (e *StmtError) Error() string {
	var b strings.Builder
	if e.Table != (change.TableID{}) {
		b.WriteString("table ")
		b.WriteString(e.Table.String())
		b.WriteString(": ")
	}
	b.WriteString(summarize(e.SQL))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

func (e *StmtError) Unwrap() error { return e.Err }

// summarize shortens a statement for an error message: its first line, at
// most 200 characters (an INSERT ... SELECT of a wide table is long).
func summarize(sql string) string {
	if i := strings.IndexByte(sql, '\n'); i >= 0 {
		sql = sql[:i] + " ..."
	}
	if len(sql) > 200 {
		sql = sql[:200] + " ..."
	}
	return sql
}

// Applier runs the shared apply algorithm through a Dialect and a Session.
type Applier struct {
	Dialect Dialect
	// Schema is the target schema for every table; empty keeps the source
	// table's schema name.
	Schema string
	Log    *slog.Logger
	stages int
}

// Target names the target table for a source table.
func (a *Applier) Target(id change.TableID) change.TableID {
	if a.Schema != "" {
		id.Schema = a.Schema
	}
	return id
}

// ApplyOptions tune one Apply.
type ApplyOptions struct {
	Mode  Mode
	Marks []StreamMark
	// Fresh reports whether a table was emptied by Reset and since then has
	// received only snapshot reads with no replay, so that reads may be
	// appended without the delete step. Nil means never.
	Fresh func(id change.TableID) bool
	// NoShortcut makes every staged row delete its key before inserting,
	// even a key first inserted in this batch. The targets retry a batch
	// with it when a shortcut hit a duplicate key (a redelivery).
	NoShortcut bool
}

// Result says what Apply did.
type Result struct {
	Rows int // reduced rows merged
	// Appended lists the tables whose rows were appended without a merge.
	Appended []change.TableID
	// Merged lists the tables that went through a merge or a truncate.
	Merged []change.TableID
}

func (a *Applier) exec(ctx context.Context, s Session, table change.TableID, sql string) error {
	if err := s.Exec(ctx, sql); err != nil {
		return &StmtError{Table: table, SQL: sql, Err: err}
	}
	return nil
}

// Setup creates sluice's state tables, unless they exist: then it runs no
// DDL, so a role that may not create anything can still apply.
func (a *Applier) Setup(ctx context.Context, s Session) error {
	_, ok1, err := s.TableColumns(ctx, stateTable)
	if err != nil {
		return fmt.Errorf("look up %s: %w", stateTable, err)
	}
	_, ok2, err := s.TableColumns(ctx, streamTable)
	if err != nil {
		return fmt.Errorf("look up %s: %w", streamTable, err)
	}
	if ok1 && ok2 {
		return nil
	}
	for _, q := range SetupSQL() {
		if err := a.exec(ctx, s, change.TableID{}, q); err != nil {
			return err
		}
	}
	return nil
}

// Apply applies a batch inside the session's transaction: schema changes,
// truncates, the staged merge per table, then each table's new state and
// the stream marks. The caller commits.
func (a *Applier) Apply(ctx context.Context, s Session, b *change.Batch, o ApplyOptions) (Result, error) {
	var res Result
	if len(b.Changes) == 0 && len(b.Snapshotted) == 0 && len(o.Marks) == 0 {
		return res, nil // an Ack alone moves nothing here
	}
	if err := fence(ctx, s, o.Marks); err != nil {
		return res, err
	}
	stored, err := s.ReadState(ctx)
	if err != nil {
		return res, fmt.Errorf("read state: %w", err)
	}
	state := make(map[change.TableID]change.TableState, len(stored))
	for id, r := range stored {
		state[id] = r.State
	}
	for _, tp := range plan(b, state, o.Mode, !o.NoShortcut) {
		row := stored[tp.ID]
		shape, err := a.current(ctx, s, tp.ID, row.Shape)
		if err != nil {
			return res, err
		}
		target := a.Target(tp.ID)
		fresh := o.Fresh != nil && o.Fresh(tp.ID)
		merged := false
		// All DDL first, to the batch's last schema of the table, before any
		// of its rows are written: DuckDB rejects re-inserting a deleted key
		// after an ALTER that followed inserts in the same transaction, and
		// one ALTER per batch is cheaper anyway. Earlier segments' rows are
		// projected onto the final shape by column name.
		final := tp.Final()
		if shape, err = a.ensure(ctx, s, target, shape, final); err != nil {
			return res, err
		}
		for _, seg := range tp.Segments {
			if !seg.Table.SameShape(final) {
				seg.Project(final)
			}
			if seg.Truncate {
				merged = true
				if err := a.exec(ctx, s, target, a.Dialect.Truncate(target)); err != nil {
					return res, err
				}
			}
			if len(seg.Rows) == 0 {
				continue
			}
			freshReads := fresh && !o.NoShortcut
			if !(freshReads && seg.Reads()) {
				merged = true
				fresh = false
			}
			if err := a.merge(ctx, s, target, seg, freshReads, !o.NoShortcut); err != nil {
				return res, err
			}
			res.Rows += len(seg.Rows)
		}
		st := row.State
		switch {
		case o.Mode == ModeStream:
			// Only truncates move a table's position in stream mode.
			if tp.hasTrunc && st.Applied.Less(tp.truncPos) {
				st.Applied = tp.truncPos
			}
		case st.Applied.Less(tp.MaxPos):
			st.Applied = tp.MaxPos
		}
		if tp.Snapshot != nil {
			st.Snapshotted = true
			if st.Applied.Less(tp.Snapshot.Pos) {
				st.Applied = tp.Snapshot.Pos
			}
		}
		for _, q := range PutStateSQL(tp.ID, st, shape) {
			if err := a.exec(ctx, s, change.TableID{}, q); err != nil {
				return res, err
			}
		}
		if merged {
			res.Merged = append(res.Merged, tp.ID)
		} else {
			res.Appended = append(res.Appended, tp.ID)
		}
	}
	for _, m := range o.Marks {
		for _, q := range PutMarkSQL(m) {
			if err := a.exec(ctx, s, change.TableID{}, q); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// fence checks the fenced marks against the stored ones (see
// StreamMark.Below) before anything is applied.
func fence(ctx context.Context, s Session, marks []StreamMark) error {
	stored := map[string]map[string]string{}
	for _, m := range marks {
		if m.Below == "" {
			continue
		}
		got, ok := stored[m.Stream]
		if !ok {
			var err error
			if got, err = s.ReadMarks(ctx, m.Stream); err != nil {
				return fmt.Errorf("read the marks of stream %s: %w", m.Stream, err)
			}
			stored[m.Stream] = got
		}
		if seq, ok := got[m.Shard]; ok && !SeqLess(seq, m.Below) {
			return &FenceError{Stream: m.Stream, Shard: m.Shard, Stored: seq, Below: m.Below}
		}
	}
	return nil
}

// current returns the shape the target table has: the stored one, or, for
// a table sluice has no shape for, its column names; nil when the table
// does not exist.
func (a *Applier) current(ctx context.Context, s Session, id change.TableID, stored *change.Table) (*change.Table, error) {
	if stored != nil {
		return stored, nil
	}
	target := a.Target(id)
	cols, ok, err := s.TableColumns(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("look up table %s: %w", target, err)
	}
	if !ok {
		return nil, nil
	}
	t := &change.Table{Schema: id.Schema, Name: id.Name}
	for _, c := range cols {
		t.Columns = append(t.Columns, change.Column{Name: c})
	}
	return t, nil
}

// ensure creates or alters the target table so it has want's shape, and
// returns the shape it now has.
func (a *Applier) ensure(ctx context.Context, s Session, target change.TableID, have, want *change.Table) (*change.Table, error) {
	if have != nil && have.SameShape(want) {
		return have, nil
	}
	if have == nil {
		stmts := []string{CreateTableSQL(a.Dialect, target, want)}
		// Only when missing: creating a schema needs a privilege on the
		// database that applying to an existing schema does not.
		ok, err := s.SchemaExists(ctx, target.Schema)
		if err != nil {
			return nil, fmt.Errorf("look up schema %s: %w", target.Schema, err)
		}
		if !ok {
			stmts = append([]string{"CREATE SCHEMA IF NOT EXISTS " + change.QuoteIdent(target.Schema)}, stmts...)
		}
		for _, q := range stmts {
			if err := a.exec(ctx, s, target, q); err != nil {
				return nil, err
			}
		}
		a.log().Info("created warehouse table", "table", target.String(), "source", want.ID().String())
		return want, nil
	}
	stmts, err := AlterTableSQL(a.Dialect, target, have, want)
	if err != nil {
		return nil, err
	}
	for _, q := range stmts {
		if err := a.exec(ctx, s, target, q); err != nil {
			return nil, err
		}
	}
	if len(stmts) > 0 {
		a.log().Info("altered warehouse table to the source's new schema", "table", target.String(), "statements", len(stmts))
	}
	return want, nil
}

// merge lands a segment's rows and merges them. Keys known not to be in
// the target skip the delete step: every key of a segment that follows a
// truncate; snapshot reads when freshReads (a table emptied by Reset that
// has had only snapshot reads since, whose keys are distinct); keys first
// inserted in the batch when inserts (the source said the row was new).
func (a *Applier) merge(ctx context.Context, s Session, target change.TableID, seg *Segment, freshReads, inserts bool) error {
	if seg.Table.Keyless() {
		return a.mergeMultiset(ctx, s, target, seg)
	}
	appendOnly := true
	for i := range seg.Rows {
		r := &seg.Rows[i]
		switch {
		case r.Delete:
			r.Op = 'd'
			appendOnly = false
		case seg.Truncate, freshReads && r.First == change.OpRead, inserts && r.First == change.OpInsert:
			r.Op = 'i'
		default:
			r.Op = 'u'
			appendOnly = false
		}
	}
	t := seg.Table
	if appendOnly && len(unchangedColumns(seg)) == 0 {
		if done, err := loadDirect(ctx, s, target, t, seg.Rows); done || err != nil {
			return err
		}
	}
	stage, err := a.stage(ctx, s, target, t, seg.Rows)
	if err != nil {
		return err
	}
	unchanged := unchangedColumns(seg)
	stmts := StageMergeSQL(a.Dialect, target, stage, t, unchanged, appendOnly)
	stmts = append(stmts, DropStageSQL(a.Dialect, stage, len(unchanged) > 0)...)
	for _, q := range stmts {
		if err := a.exec(ctx, s, target, q); err != nil {
			return err
		}
	}
	return nil
}

// mergeMultiset lands a keyless segment's rows: one staged row per row
// added or removed (a Row with N = 3 is staged three times), then
// MultisetMergeSQL. A segment that only adds rows is loaded directly when
// the session can.
func (a *Applier) mergeMultiset(ctx context.Context, s Session, target change.TableID, seg *Segment) error {
	n, appendOnly := 0, true
	for _, r := range seg.Rows {
		n += max(r.N, -r.N)
		appendOnly = appendOnly && r.N > 0
	}
	rows := make([]Row, 0, n)
	for _, r := range seg.Rows {
		r.Op = 'i'
		if r.N < 0 {
			r.Op = 'd'
		}
		for range max(r.N, -r.N) {
			rows = append(rows, r)
		}
	}
	t := seg.Table
	if appendOnly {
		if done, err := loadDirect(ctx, s, target, t, rows); done || err != nil {
			return err
		}
	}
	if !appendOnly {
		if err := CanDeleteEqualRows(a.Dialect, t); err != nil {
			return err // before anything is staged
		}
	}
	stage, err := a.stage(ctx, s, target, t, rows)
	if err != nil {
		return err
	}
	stmts, err := MultisetMergeSQL(a.Dialect, target, stage, t, appendOnly)
	if err != nil {
		return err
	}
	stmts = append(stmts, DropStageSQL(a.Dialect, stage, false)...)
	for _, q := range stmts {
		if err := a.exec(ctx, s, target, q); err != nil {
			return err
		}
	}
	return nil
}

// loadDirect loads rows straight into the target when the session can;
// done is false, with no error, when the rows must go through staging.
func loadDirect(ctx context.Context, s Session, target change.TableID, t *change.Table, rows []Row) (done bool, err error) {
	dl, ok := s.(DirectLoader)
	if !ok {
		return false, nil
	}
	err = dl.LoadDirect(ctx, target, t, rows)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNoDirect):
		return false, nil
	}
	var se *StmtError
	if errors.As(err, &se) {
		return true, err
	}
	return true, fmt.Errorf("table %s: load %d rows: %w", target, len(rows), err)
}

// stage creates a staging table for t and loads rows into it.
func (a *Applier) stage(ctx context.Context, s Session, target change.TableID, t *change.Table, rows []Row) (string, error) {
	a.stages++
	stage := "_sluice_stage_" + strconv.Itoa(a.stages)
	if err := a.exec(ctx, s, target, CreateStageSQL(a.Dialect, stage, t)); err != nil {
		return "", err
	}
	if err := s.Load(ctx, stage, t, rows); err != nil {
		var se *StmtError
		if errors.As(err, &se) {
			return "", err
		}
		return "", fmt.Errorf("table %s: load %d rows into staging: %w", target, len(rows), err)
	}
	return stage, nil
}

// unchangedColumns lists the columns some row of the segment left unchanged.
func unchangedColumns(seg *Segment) []int {
	seen := make([]bool, len(seg.Table.Columns))
	var out []int
	for _, r := range seg.Rows {
		if r.Delete {
			continue
		}
		for i, v := range r.Values {
			if v.Kind == change.KindUnchanged && i < len(seen) && !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	return out
}

// Reset prepares a table for a snapshot inside the session's transaction:
// drops the target table if it exists, creates it from t, and forgets the
// table's state. Dropping rather than emptying also takes a changed schema.
func (a *Applier) Reset(ctx context.Context, s Session, t *change.Table) error {
	target := a.Target(t.ID())
	_, ok, err := s.TableColumns(ctx, target)
	if err != nil {
		return fmt.Errorf("look up table %s: %w", target, err)
	}
	if ok {
		if err := a.exec(ctx, s, target, "DROP TABLE "+target.Quoted()); err != nil {
			return err
		}
	}
	if _, err := a.ensure(ctx, s, target, nil, t); err != nil {
		return err
	}
	for _, q := range PutStateSQL(t.ID(), change.TableState{}, t) {
		if err := a.exec(ctx, s, change.TableID{}, q); err != nil {
			return err
		}
	}
	return nil
}

func (a *Applier) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}
