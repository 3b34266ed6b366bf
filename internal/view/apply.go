package view

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/sluice-dev/sluice/internal/change"
)

// maxChunk bounds the changes of one input buffered in memory before they
// are written to the state file (inside the open DuckDB transaction).
const maxChunk = 8192

// Apply feeds a batch of source changes through the views and returns the
// views' output changes for the transactions the batch completes (and, when
// a view's inputs finish their snapshots, its initial output as op r rows
// with a SnapshotDone). The state of those transactions is committed to the
// state file before Apply returns. A transaction the batch leaves open is
// kept in an open DuckDB transaction until a later batch completes it.
//
// A view failing on the batch (a *RuntimeError) stops alone: it is
// recorded as stopped with a dead letter, the state file is opened again as
// of its last commit, and the batches since (kept while a transaction they
// left open is, up to maxCarry changes) and this one are applied again
// without the view, so the mirror and the other views go on. Past that
// bound, the view is still recorded as stopped, but Apply returns a
// *RestartError: the pipeline must start again from the source's
// confirmed position.
//
// Any other failure is returned after the state is opened again, so a
// retry of the same batch may succeed; when that cannot be done, the
// engine refuses further work: close it and open it again (the source
// then replays from its confirmed position).
func (e *Engine) Apply(ctx context.Context, b *change.Batch) (*change.Batch, error) {
	if e.closed {
		return nil, ErrClosed
	}
	if e.broken != nil {
		return nil, fmt.Errorf("view engine stopped by an earlier error: %w", e.broken)
	}
	if e.Pending() {
		return nil, errors.New("view engine: a view's whole output is still being emitted: take it with NextPage before the next batch")
	}
	// The state file as last committed is the state before the batches
	// carried since (a transaction they left open lives only in DuckDB's
	// transaction; see commit): a failure is undone by opening it again,
	// with the inputs' schemas of then, and applying those batches and b
	// again.
	for {
		out, err := e.redo(ctx, b)
		if err == nil {
			e.keep(b)
			return out, nil
		}
		bg := context.WithoutCancel(ctx)
		if e.txOpen {
			e.conn.ExecContext(bg, "ROLLBACK")
			e.txOpen = false
		}
		var re *RuntimeError
		v := (*compiled)(nil)
		if errors.As(err, &re) {
			v = e.viewNamed(re.View)
		}
		if v != nil && v.stopped == "" {
			if serr := e.stop(bg, v, re); serr != nil {
				e.broken = errors.Join(err, serr)
				return nil, e.broken
			}
		}
		if e.carryLost || e.path == "" {
			if v != nil {
				err = &RestartError{View: v.spec.Name, Err: err}
			}
			e.broken = err
			return nil, err
		}
		carry, tables := e.carry, e.carryTables
		if lerr := e.reload(bg, tables); lerr != nil {
			e.broken = errors.Join(err, lerr)
			return nil, e.broken
		}
		e.carry, e.redoing = carry, len(carry) > 0
		if v == nil {
			return nil, err // a retry of b applies the carried batches first
		}
		// Once more, without the view (it is stopped in the state now).
	}
}

// reshapes reports whether the transaction of cs[0] (its changes in cs)
// brings a new shape of an input: it is then not evaluated together with
// the transactions before it, and the state commits before it (see
// schema), so a view the new shape stops has seen them.
func (e *Engine) reshapes(cs []change.Change) bool {
	cl := cs[0].Pos.CommitLSN
	var seen *change.Table // the last table found in its stored shape
	for i := range cs {
		c := &cs[i]
		if c.Pos.CommitLSN != cl || c.Op == change.OpRead {
			return false
		}
		if c.Table == seen {
			continue
		}
		in := e.inputs[c.Table.ID()]
		if in != nil && c.Table != in.tbl && !in.tbl.SameShape(c.Table) {
			return true
		}
		seen = c.Table
	}
	return false
}

// maxCarry bounds the changes of the batches kept in memory while they
// leave a transaction open (see Apply): past it, a failure asks for a
// restart instead.
const maxCarry = 200_000

// redo applies b, after the carried batches again when the state was
// opened again (their output was returned before).
func (e *Engine) redo(ctx context.Context, b *change.Batch) (*change.Batch, error) {
	if e.redoing {
		carry := e.carry
		e.carry = nil
		for _, cb := range carry {
			if _, err := e.apply(ctx, cb); err != nil {
				// Their transactions before the open one replay and
				// change nothing: the state is the one they started from.
				e.carry = carry
				return nil, err
			}
			e.keep(cb)
		}
		e.redoing = false
	}
	return e.apply(ctx, b)
}

// keep remembers b when it left a transaction open.
func (e *Engine) keep(b *change.Batch) {
	if !e.txOpen || e.carryLost {
		return
	}
	e.carry = append(e.carry, b)
	limit := e.carryLimit
	if limit <= 0 {
		limit = maxCarry
	}
	if e.carried += len(b.Changes); e.carried > limit {
		e.carry, e.carryLost = nil, true
	}
}

// reload opens the state file again as of its last commit.
func (e *Engine) reload(ctx context.Context, tables []*change.Table) error {
	old := e.core
	old.close()
	if err := e.load(ctx, old.path, old.specs, tables, old.log); err != nil {
		return fmt.Errorf("open view state again after a failure: %w", err)
	}
	return nil
}

// viewNamed finds a view by its configured name.
func (e *Engine) viewNamed(name string) *compiled {
	for _, v := range e.views {
		if v.spec.Name == name {
			return v
		}
	}
	return nil
}

func (e *Engine) apply(ctx context.Context, b *change.Batch) (*change.Batch, error) {
	out := &change.Batch{Ack: b.Ack}
	e.lastAck = max(e.lastAck, b.Ack)
	// The last streamed transaction, when this batch does not complete it.
	var tail change.LSN
	for i := len(b.Changes) - 1; i >= 0; i-- {
		c := &b.Changes[i]
		if in := e.inputs[c.Table.ID()]; in != nil && in.event {
			continue // an event has no position of the source
		}
		if c.Op != change.OpRead {
			if c.Pos.CommitLSN > b.Ack {
				tail = c.Pos.CommitLSN
			}
			break
		}
	}
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	if err := e.resendLogged(ctx, out); err != nil {
		return nil, err
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		in := e.inputs[c.Table.ID()]
		if in != nil && in.event {
			if err := e.event(ctx, in, c); err != nil {
				return nil, err
			}
			continue
		}
		if c.Op == change.OpRead {
			if in == nil {
				continue
			}
			if e.cur != 0 {
				if err := e.finish(ctx, out); err != nil {
					return nil, err
				}
			}
			if err := e.snapshotRow(ctx, in, c); err != nil {
				return nil, err
			}
			continue
		}
		if cl := c.Pos.CommitLSN; cl != e.cur || e.curEvents {
			// Consecutive new transactions of one batch are evaluated as
			// one (see "Unit of work" in the package documentation); a
			// replay, and the transaction the batch leaves open, stand
			// alone.
			reshape := e.reshapes(b.Changes[i:])
			if e.cur != 0 && (e.curEvents || e.curReplay || cl <= e.done || cl == tail || reshape) {
				if err := e.finish(ctx, out); err != nil {
					return nil, err
				}
			}
			if cl == tail || reshape {
				// Everything before the open transaction becomes durable
				// now. Before a new shape too: DuckDB refuses to commit
				// rows written to a table before an ALTER of it in the same
				// transaction.
				if err := e.commit(ctx); err != nil {
					return nil, err
				}
				if err := e.begin(ctx); err != nil {
					return nil, err
				}
			}
			if e.cur == 0 {
				if err := e.start(ctx, c, out); err != nil {
					return nil, err
				}
			} else {
				e.extend(c)
			}
		}
		if e.curReplay || in == nil || in.snapshotted && c.Pos.CommitLSN <= in.snapPos {
			continue
		}
		if err := e.change(ctx, in, c); err != nil {
			return nil, err
		}
	}
	if e.cur != 0 && (b.Ack >= e.cur || e.curEvents) {
		if err := e.finish(ctx, out); err != nil {
			return nil, err
		}
	}
	for _, s := range b.Snapshotted {
		in := e.inputs[s.Table.ID()]
		if in == nil {
			continue
		}
		if err := e.flush(ctx, in); err != nil {
			return nil, err
		}
		in.snapshotted, in.snapping, in.snapPos = true, false, s.Pos.CommitLSN
		if err := e.saveInput(ctx, in); err != nil {
			return nil, err
		}
	}
	for _, v := range e.views {
		if !v.live && v.stopped == "" && e.ready(v) {
			if err := e.initView(ctx, v, out); err != nil {
				return nil, err
			}
		}
	}
	if err := e.page(ctx, out); err != nil {
		return nil, err
	}
	if e.cur == 0 {
		for _, in := range e.order {
			if err := e.flush(ctx, in); err != nil {
				return nil, err
			}
		}
		if err := e.commit(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (e *Engine) ready(v *compiled) bool {
	for _, o := range v.occ {
		if !o.in.snapshotted {
			return false
		}
	}
	return true
}

func (e *Engine) begin(ctx context.Context) error {
	if e.txOpen {
		return nil
	}
	if err := e.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		return fmt.Errorf("view state: %w", err)
	}
	e.txOpen = true
	select {
	case pos := <-e.confirm:
		// Outputs of events processed after the transaction at pos carry
		// its commit LSN and may not be in the target yet (see events.go).
		if err := e.exec(ctx, `DELETE FROM "_sluice"."outlog" WHERE commit_lsn < ? OR commit_lsn = ? AND seq < ?`, uint64(pos), uint64(pos), eventSeqBase); err != nil {
			return fmt.Errorf("prune view output log: %w", err)
		}
	default:
	}
	return nil
}

func (e *Engine) commit(ctx context.Context) error {
	if !e.txOpen {
		return nil
	}
	if err := e.saveMarks(ctx); err != nil {
		return err
	}
	if err := e.exec(ctx, `UPDATE "_sluice"."meta" SET done = ?, next_rid = ?, event_pos = ?, event_seq = ?`, uint64(e.done), e.nextRid, uint64(e.eventPos), e.eventSeq); err != nil {
		return fmt.Errorf("view state: %w", err)
	}
	if err := e.exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit view state: %w", err)
	}
	e.txOpen = false
	e.committed()
	return nil
}

// committed notes that the state file holds everything applied so far:
// no batch before this one needs applying again after a failure.
func (e *Engine) committed() {
	e.carry, e.carried, e.carryLost = nil, 0, false
	e.carryTables = make([]*change.Table, 0, len(e.order))
	for _, in := range e.order {
		in.written = false
		e.carryTables = append(e.carryTables, in.tbl)
	}
}

func (e *Engine) saveInput(ctx context.Context, in *input) error {
	return e.exec(ctx, `UPDATE "_sluice"."inputs" SET snapshotted = ?, snap_pos = ? WHERE schema_name = ? AND table_name = ?`,
		in.snapshotted, uint64(in.snapPos), in.id.Schema, in.id.Name)
}

func (e *Engine) saveView(ctx context.Context, v *compiled) error {
	return e.exec(ctx, `UPDATE "_sluice"."views" SET live = ? WHERE name = ?`, v.live, v.slug())
}

// start begins receiving the source transaction of c. A transaction at or
// before the last one processed is a replay: its logged outputs are
// emitted again and its changes skipped.
func (e *Engine) start(ctx context.Context, c *change.Change, out *change.Batch) error {
	e.cur, e.first, e.txRid = c.Pos.CommitLSN, c.Pos.CommitLSN, e.nextRid
	e.curTime = changeMeta{txid: c.TxID, at: c.CommitTime}
	e.curReplay = c.Pos.CommitLSN <= e.done
	if e.curReplay {
		return e.replay(ctx, c.Pos.CommitLSN, out)
	}
	return nil
}

// extend adds the transaction of c to the group being received: its rows
// join the group's (txRid stays that of the group's first transaction, so
// the rows before the group are its old rows) and the group's outputs
// take its position and commit time.
func (e *Engine) extend(c *change.Change) {
	e.cur = c.Pos.CommitLSN
	e.curTime = changeMeta{txid: c.TxID, at: c.CommitTime}
}

// finish completes the source transactions being received: the views see
// their net effect and emit their output changes.
func (e *Engine) finish(ctx context.Context, out *change.Batch) error {
	if e.curReplay {
		e.cur, e.curReplay = 0, false
		// Events that arrived meanwhile are evaluated now, over the state
		// the replay left (it changed nothing).
		return e.heldEvents(ctx, out)
	}
	defer func() { e.cur, e.curEvents, e.seqBase = 0, false, 0 }()
	var touched []*input
	for _, in := range e.order {
		if err := e.flush(ctx, in); err != nil {
			return err
		}
		if in.touched {
			touched = append(touched, in)
			in.written = true // its old and delta rows
		}
	}
	if len(touched) > 0 {
		if err := e.evaluate(ctx, touched, out); err != nil {
			return err
		}
		for _, in := range touched {
			for _, t := range []string{in.old, in.delta} {
				if err := e.exec(ctx, "DELETE FROM "+t); err != nil {
					return err
				}
			}
			in.touched, in.sample = false, nil
			if err := e.passed(ctx, in); err != nil {
				return err
			}
		}
	}
	if e.cur > e.done && !e.curEvents {
		e.done = e.cur
	}
	return nil
}

// change buffers one streamed change of an input.
func (e *Engine) change(ctx context.Context, in *input, c *change.Change) error {
	if c.Table != in.tbl {
		if err := e.schema(ctx, in, c.Table); err != nil {
			return err
		}
	}
	if c.Op == change.OpTruncate {
		if err := e.flush(ctx, in); err != nil {
			return err
		}
		in.touched, in.written = true, true
		if err := e.exec(ctx, "INSERT INTO "+in.old+" SELECT * FROM "+in.quoted+" WHERE "+change.QuoteIdent(ridCol)+" < ?", e.txRid); err != nil {
			return err
		}
		return e.exec(ctx, "DELETE FROM "+in.quoted)
	}
	if len(in.chunk) > 0 && in.chunk[0].Op == change.OpRead {
		if err := e.flush(ctx, in); err != nil {
			return err
		}
	}
	in.touched = true
	in.sampleKey(c)
	in.chunk = append(in.chunk, c)
	if len(in.chunk) >= maxChunk {
		return e.flush(ctx, in)
	}
	return nil
}

// schema handles a change read with another schema than the stored one.
func (e *Engine) schema(ctx context.Context, in *input, t *change.Table) error {
	if in.tbl.SameShape(t) {
		in.tbl = t
		return nil
	}
	// DuckDB refuses to commit rows written to a table before an ALTER of
	// it in the same transaction: what was written commits first. A
	// transaction starting with the new shape was cut from the ones
	// before it for this (see apply); one that wrote the table's rows
	// before a new shape cannot be cut.
	if len(in.chunk) > 0 || in.written {
		if e.cur != 0 {
			return fmt.Errorf("view input %s changed shape (a column added, dropped or retyped) inside source transaction %s after that transaction changed its rows: "+
				"the views cannot follow this (a known limit, see docs/views.md); to go on, stop sluice and delete the views' state file %s: every view is rebuilt from a new snapshot",
				in.id, e.cur, e.path)
		}
		if err := e.flush(ctx, in); err != nil {
			return err
		}
		if err := e.commit(ctx); err != nil {
			return err
		}
		if err := e.begin(ctx); err != nil {
			return err
		}
	}
	stops, err := e.reshape(ctx, in, t, e.views)
	if err != nil {
		return err
	}
	for _, st := range stops {
		if err := e.stop(ctx, st.v, &RuntimeError{View: st.v.spec.Name, Pos: change.Position{CommitLSN: e.cur}, Msg: st.why}); err != nil {
			return err
		}
	}
	return e.stageTable(ctx, in)
}

// snapshotRow buffers one snapshot row. The first one of a table that was
// snapshotted before starts a re-snapshot: the stored rows are dropped and
// the views reading the table emit their whole output again when it ends.
func (e *Engine) snapshotRow(ctx context.Context, in *input, c *change.Change) error {
	if c.Table != in.tbl {
		if err := e.schema(ctx, in, c.Table); err != nil {
			return err
		}
	}
	if !in.snapping {
		if err := e.flush(ctx, in); err != nil {
			return err
		}
		if err := e.exec(ctx, "DELETE FROM "+in.quoted); err != nil {
			return err
		}
		in.written = true
		in.snapping, in.snapshotted = true, false
		if err := e.saveInput(ctx, in); err != nil {
			return err
		}
		for _, v := range in.views {
			if v.live {
				v.live = false
				if err := e.saveView(ctx, v); err != nil {
					return err
				}
			}
		}
	}
	if len(in.chunk) > 0 && in.chunk[0].Op != change.OpRead {
		if err := e.flush(ctx, in); err != nil {
			return err
		}
	}
	in.chunk = append(in.chunk, c)
	if len(in.chunk) >= maxChunk {
		return e.flush(ctx, in)
	}
	return nil
}

// event is the net effect of a chunk's changes on one key of a keyed input.
type event struct {
	key    []change.Value // in the input's key order
	del    bool
	row    []change.Value // stored column order
	origin []change.Value // key of the stored row that supplies unchanged values
	unch   []bool
}

func keyString(vals []change.Value) string {
	return string(appendRow(nil, vals))
}

// align puts a row of schema t into stored column order.
func (in *input) align(t *change.Table, row []change.Value) []change.Value {
	m := in.colsOf(t)
	out := make([]change.Value, len(m))
	for i, j := range m {
		if j >= 0 && j < len(row) {
			out[i] = row[j]
		}
	}
	return out
}

func keyOf(t *change.Table, row []change.Value) []change.Value {
	k := make([]change.Value, len(t.Key))
	for i, j := range t.Key {
		if j < len(row) {
			k[i] = row[j]
		}
	}
	return k
}

// flush writes an input's buffered changes into its stored table.
func (e *Engine) flush(ctx context.Context, in *input) error {
	if len(in.chunk) == 0 {
		return nil
	}
	chunk := in.chunk
	in.chunk, in.written = nil, true
	switch {
	case chunk[0].Op == change.OpRead:
		rows := make([][]change.Value, len(chunk))
		for i, c := range chunk {
			rows[i] = in.align(c.Table, c.After)
		}
		return e.insertRows(ctx, in, rows)
	case in.keyed():
		return e.flushKeyed(ctx, in, chunk)
	default:
		return e.flushKeyless(ctx, in, chunk)
	}
}

func (e *Engine) flushKeyed(ctx context.Context, in *input, chunk []*change.Change) error {
	events := map[string]*event{}
	var order []string
	set := func(ev *event) {
		k := keyString(ev.key)
		if _, ok := events[k]; !ok {
			order = append(order, k)
		}
		events[k] = ev
	}
	for _, c := range chunk {
		switch c.Op {
		case change.OpInsert:
			set(&event{key: keyOf(c.Table, c.After), row: in.align(c.Table, c.After)})
		case change.OpDelete:
			set(&event{key: keyOf(c.Table, c.Before), del: true})
		case change.OpUpdate:
			ev := &event{key: keyOf(c.Table, c.After), row: in.align(c.Table, c.After)}
			src := ev.key
			old := c.OldKey()
			if old != nil {
				src = old
			}
			ev.unch = make([]bool, len(ev.row))
			any := false
			for i, v := range ev.row {
				if v.Kind == change.KindUnchanged {
					ev.unch[i], any = true, true
				}
			}
			if any {
				if p := events[keyString(src)]; p != nil {
					if p.del {
						for i := range ev.row {
							if ev.unch[i] {
								ev.row[i], ev.unch[i] = change.Null, false
							}
						}
					} else {
						for i := range ev.row {
							if ev.unch[i] {
								ev.row[i] = p.row[i]
								ev.unch[i] = p.unch != nil && p.unch[i]
							}
						}
						ev.origin = p.origin
					}
				} else {
					ev.origin = src
				}
				any = false
				for _, u := range ev.unch {
					any = any || u
				}
			}
			if !any {
				ev.unch, ev.origin = nil, nil
			}
			if old != nil {
				set(&event{key: old, del: true})
			}
			set(ev)
		}
	}
	skey := in.storedKey()
	rows := make([][]driver.Value, 0, len(order))
	unchanged, upserts := false, 0
	for _, k := range order {
		ev := events[k]
		r := make([]driver.Value, 2+2*len(skey)+len(in.stored))
		r[0] = ev.del
		if ev.unch != nil {
			mask := make([]byte, len(ev.unch))
			for i, u := range ev.unch {
				mask[i] = '0'
				if u {
					mask[i] = '1'
				}
			}
			r[1] = string(mask)
			unchanged = true
		}
		for i, kc := range skey {
			s, ok, err := stageText(in.tbl, kc, in.stored[kc].ct, ev.key[i])
			if err != nil {
				return err
			}
			if ok {
				r[2+2*i] = s
			}
			if ev.origin != nil {
				if s, ok, _ := stageText(in.tbl, kc, in.stored[kc].ct, ev.origin[i]); ok {
					r[3+2*i] = s
				}
			}
		}
		if !ev.del {
			upserts++
			if err := in.stageValues(r[2+2*len(skey):], ev.row); err != nil {
				return err
			}
		}
		rows = append(rows, r)
	}
	if err := e.stage(ctx, in, rows); err != nil {
		return err
	}
	rid := change.QuoteIdent(ridCol)
	var keyT, keyS, keyO []string
	for i, kc := range skey {
		keyT = append(keyT, "t."+change.QuoteIdent(in.stored[kc].name))
		keyS = append(keyS, fromStage(in.stored[kc].ct, fmt.Sprintf(`s."k_%d"`, i)))
		keyO = append(keyO, "o."+change.QuoteIdent(in.stored[kc].name)+" = "+fromStage(in.stored[kc].ct, fmt.Sprintf(`s."o_%d"`, i)))
	}
	keyIn := "(" + strings.Join(keyT, ", ") + ") IN (SELECT " + strings.Join(keyS, ", ") + " FROM " + in.stage + " s)"
	if err := e.exec(ctx, "INSERT INTO "+in.old+" SELECT t.* FROM "+in.quoted+" t WHERE "+keyIn+" AND t."+rid+" < ?", e.txRid); err != nil {
		return err
	}
	exprs := make([]string, len(in.stored))
	for j, sc := range in.stored {
		cast := fromStage(sc.ct, fmt.Sprintf(`s."c_%d"`, j))
		if unchanged {
			exprs[j] = fmt.Sprintf(`CASE WHEN substr(s."_u", %d, 1) = '1' THEN o.%s ELSE %s END`, j+1, change.QuoteIdent(sc.name), cast)
		} else {
			exprs[j] = cast
		}
	}
	sel := "SELECT CAST(? AS BIGINT) + row_number() OVER () - 1, " + strings.Join(exprs, ", ") + " FROM " + in.stage + " s"
	if unchanged {
		sel += " LEFT JOIN " + in.quoted + " o ON " + strings.Join(keyO, " AND ")
		if err := e.exec(ctx, "DELETE FROM "+in.fresh); err != nil {
			return err
		}
		if err := e.exec(ctx, "INSERT INTO "+in.fresh+" "+sel+" WHERE NOT s._del", e.nextRid); err != nil {
			return err
		}
	}
	if err := e.exec(ctx, "DELETE FROM "+in.quoted+" t WHERE "+keyIn); err != nil {
		return err
	}
	if unchanged {
		if err := e.exec(ctx, "INSERT INTO "+in.quoted+" SELECT * FROM "+in.fresh); err != nil {
			return err
		}
	} else if err := e.exec(ctx, "INSERT INTO "+in.quoted+" "+sel+" WHERE NOT s._del", e.nextRid); err != nil {
		return err
	}
	e.nextRid += int64(upserts)
	return nil
}

// stageValues writes a stored-order row's staged texts into r.
func (in *input) stageValues(r []driver.Value, row []change.Value) error {
	for j, v := range row {
		s, ok, err := stageText(in.tbl, 0, in.stored[j].ct, v)
		if err != nil {
			return fmt.Errorf("%s: %w", in.stored[j].name, err)
		}
		if ok {
			r[j] = s
		}
	}
	return nil
}

func (e *Engine) flushKeyless(ctx context.Context, in *input, chunk []*change.Change) error {
	var ins [][]change.Value
	var dels [][]change.Value
	live := map[string][]int{}
	add := func(row []change.Value) {
		k := keyString(row)
		live[k] = append(live[k], len(ins))
		ins = append(ins, row)
	}
	remove := func(row []change.Value) {
		k := keyString(row)
		if l := live[k]; len(l) > 0 {
			ins[l[len(l)-1]] = nil
			live[k] = l[:len(l)-1]
			return
		}
		dels = append(dels, row)
	}
	for _, c := range chunk {
		switch c.Op {
		case change.OpInsert:
			add(in.align(c.Table, c.After))
		case change.OpDelete:
			remove(in.align(c.Table, c.Before))
		case change.OpUpdate:
			if c.Before == nil {
				return fmt.Errorf("table %s has no key and an update came without its old row: set REPLICA IDENTITY FULL", in.id)
			}
			before, after := in.align(c.Table, c.Before), in.align(c.Table, c.After)
			for i, v := range after {
				if v.Kind == change.KindUnchanged {
					after[i] = before[i]
				}
			}
			remove(before)
			add(after)
		}
	}
	rows := make([][]driver.Value, 0, len(ins)+len(dels))
	n := 0
	for _, list := range [][][]change.Value{dels, ins} {
		for _, row := range list {
			if row == nil {
				continue
			}
			r := make([]driver.Value, 2+len(in.stored))
			r[0] = len(rows) < len(dels)
			if err := in.stageValues(r[2:], row); err != nil {
				return err
			}
			rows = append(rows, r)
			if !r[0].(bool) {
				n++
			}
		}
	}
	if err := e.stage(ctx, in, rows); err != nil {
		return err
	}
	rid := change.QuoteIdent(ridCol)
	if len(dels) > 0 {
		var casts, match []string
		for j, sc := range in.stored {
			casts = append(casts, fromStage(sc.ct, fmt.Sprintf(`"c_%d"`, j))+fmt.Sprintf(` AS "c_%d"`, j))
			match = append(match, fmt.Sprintf(`t.%s IS NOT DISTINCT FROM d."c_%d"`, change.QuoteIdent(sc.name), j))
		}
		if err := e.exec(ctx, "DELETE FROM "+in.victims); err != nil {
			return err
		}
		q := `INSERT INTO ` + in.victims + ` SELECT ` + rid + ` FROM (SELECT t.` + rid + `, d."_n",
			row_number() OVER (PARTITION BY d."_g" ORDER BY t.` + rid + `) AS "_rn"
			FROM ` + in.quoted + ` t JOIN (SELECT *, row_number() OVER () AS "_g" FROM (SELECT ` + strings.Join(casts, ", ") +
			`, count(*) AS "_n" FROM ` + in.stage + ` WHERE "_del" GROUP BY ALL)) d ON ` + strings.Join(match, " AND ") + `) WHERE "_rn" <= "_n"`
		if err := e.exec(ctx, q); err != nil {
			return err
		}
		if err := e.exec(ctx, "INSERT INTO "+in.old+" SELECT * FROM "+in.quoted+" WHERE "+rid+" < ? AND "+rid+` IN (SELECT `+rid+` FROM `+in.victims+`)`, e.txRid); err != nil {
			return err
		}
		if err := e.exec(ctx, "DELETE FROM "+in.quoted+" WHERE "+rid+` IN (SELECT `+rid+` FROM `+in.victims+`)`); err != nil {
			return err
		}
	}
	var casts []string
	for j, sc := range in.stored {
		casts = append(casts, fromStage(sc.ct, fmt.Sprintf(`"c_%d"`, j)))
	}
	if err := e.exec(ctx, "INSERT INTO "+in.quoted+" SELECT CAST(? AS BIGINT) + row_number() OVER () - 1, "+strings.Join(casts, ", ")+" FROM "+in.stage+` WHERE NOT "_del"`, e.nextRid); err != nil {
		return err
	}
	e.nextRid += int64(n)
	return nil
}

// insertRows appends snapshot rows (stored column order).
func (e *Engine) insertRows(ctx context.Context, in *input, rows [][]change.Value) error {
	staged := make([][]driver.Value, len(rows))
	off := 2 + 2*len(in.tbl.Key)
	for i, row := range rows {
		r := make([]driver.Value, off+len(in.stored))
		r[0] = false
		if err := in.stageValues(r[off:], row); err != nil {
			return err
		}
		staged[i] = r
	}
	if err := e.stage(ctx, in, staged); err != nil {
		return err
	}
	var casts []string
	for j, sc := range in.stored {
		casts = append(casts, fromStage(sc.ct, fmt.Sprintf(`"c_%d"`, j)))
	}
	if err := e.exec(ctx, "INSERT INTO "+in.quoted+" SELECT CAST(? AS BIGINT) + row_number() OVER () - 1, "+strings.Join(casts, ", ")+" FROM "+in.stage, e.nextRid); err != nil {
		return err
	}
	e.nextRid += int64(len(rows))
	return nil
}

// stage empties the input's staging table and appends rows to it.
func (e *Engine) stage(ctx context.Context, in *input, rows [][]driver.Value) error {
	if err := e.exec(ctx, "DELETE FROM "+in.stage); err != nil {
		return err
	}
	return e.appendRows(ctx, "temp", "main", bare(in.stage), rows)
}

func (e *Engine) appendRows(ctx context.Context, catalog, schema, table string, rows [][]driver.Value) error {
	if len(rows) == 0 {
		return nil
	}
	table = strings.Trim(table, `"`)
	return e.conn.Raw(func(dc any) error {
		conn, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("unexpected DuckDB driver connection %T", dc)
		}
		app, err := duckdb.NewAppender(conn, catalog, schema, table)
		if err != nil {
			return fmt.Errorf("open appender on %s: %w", table, err)
		}
		for i, r := range rows {
			if i%4096 == 0 && ctx.Err() != nil {
				app.Close()
				return ctx.Err()
			}
			if err := app.AppendRow(r...); err != nil {
				app.Close()
				return fmt.Errorf("append to %s: %w", table, err)
			}
		}
		return app.Close()
	})
}
