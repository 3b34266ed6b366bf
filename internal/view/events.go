package view

import (
	"context"
	"fmt"

	"github.com/sluice-dev/sluice/internal/change"
	evstream "github.com/sluice-dev/sluice/internal/events"
)

// EventStream is an append-only stream of events (a Kafka topic, a Kinesis
// stream) that views read as a table beside the mirrored ones: its changes
// are inserts whose key is the record's place in the stream (see package
// events). Events have no position in the source's WAL, so:
//
//   - Order. An event is processed at a transaction boundary: with the
//     group of source transactions being received when it reaches the
//     engine (it sees the tables as that group leaves them), or, when none
//     is, alone, over the tables as the last transaction processed left
//     them. Never inside a transaction.
//   - Position. Outputs of events processed with a group take the group's
//     positions. Outputs of events processed alone take (P, 2^40 + n): P
//     is the latest position the engine has seen (a transaction's commit
//     LSN or a batch's Ack), n counts on across such outputs, so they come
//     after everything before them and before the next transaction, and
//     "a later position wins" holds downstream.
//   - Exactly once. The mark of each stream's shard (the last event
//     processed) commits in the state file with the event's effect;
//     StreamMarks tells a reader where to go on. A view over events has its
//     outputs that the target lacks sent again at start (Resend), since
//     the source's replay does not bring its events again.
//
// Unless Keep, events pass through: a view reading the stream must have it
// first in FROM and neither aggregate nor DISTINCT, its output row for an
// event is computed once, when the event is processed (the join partners
// as they are then), and a later change of a partner does not rewrite it;
// no event is kept in the state. With Keep, every event is kept in the
// state (it grows with the stream) and the stream is an ordinary input of
// any view: outputs follow later changes of the tables, and aggregates over
// events work.
type EventStream struct {
	Table  *change.Table // made by events.Table
	Stream string        // the stream's name, which its marks are kept under
	Keep   bool
}

// eventSeqBase starts the sequence of the outputs of events processed
// alone: far above the sequence numbers of any transaction's outputs.
const eventSeqBase = 1 << 40

type markKey struct{ stream, shard string }

// readsEvents reports whether the view reads an event stream.
func (v *compiled) readsEvents() bool {
	for _, o := range v.occ {
		if o.in.event {
			return true
		}
	}
	return false
}

// ReadsEvents reports whether the view whose output table is id reads an
// event stream (its output cannot be evaluated from the source alone).
func (e *Engine) ReadsEvents(id change.TableID) bool {
	v := e.byName[id.Schema+"."+id.Name]
	return v != nil && v.readsEvents()
}

// checkEvents refuses what a view cannot do with events passing through.
func checkEvents(v *compiled) error {
	for j, o := range v.occ {
		if !o.in.event || o.in.keep {
			continue
		}
		fix := "; or set keep: true on the stream (every event is then kept, and the view's output follows later changes of the tables)"
		if j > 0 {
			return &SQLError{View: v.spec.Name, Msg: fmt.Sprintf("event stream %s must be the first table of FROM: a view enriches each event with the tables joined to it%s", o.in.id, fix)}
		}
		if v.aggr || v.dist {
			return &SQLError{View: v.spec.Name, Msg: fmt.Sprintf("a view over event stream %s cannot aggregate or use DISTINCT: each event is one output row, computed once; aggregate its table in the target%s", o.in.id, fix)}
		}
	}
	return nil
}

// event takes one event: with the group being received, or as the start of
// a group of events alone (see EventStream).
func (e *Engine) event(ctx context.Context, in *input, c *change.Change) error {
	if c.Op != change.OpInsert {
		return fmt.Errorf("event stream %s: an event must be an insert, not op %s", in.id, c.Op)
	}
	if e.curReplay {
		// A replayed transaction changes nothing: the event is taken
		// when it is over (finish).
		e.held = append(e.held, *c)
		return nil
	}
	if e.cur == 0 {
		e.cur = e.nextEventPos().CommitLSN
		e.first, e.txRid, e.curEvents = e.cur, e.nextRid, true
		e.seqBase = eventSeqBase + e.eventSeq
	}
	if e.curEvents && !c.CommitTime.IsZero() {
		e.curTime = changeMeta{at: c.CommitTime}
	}
	id := c.After[0].Text
	shard, seq, ok := evstream.SplitID(id)
	if !ok {
		return fmt.Errorf("event stream %s: event id %q is not shard/sequence", in.id, id)
	}
	e.pendMarks[markKey{in.stream, shard}] = seq
	return e.change(ctx, in, c)
}

// heldEvents takes the events that arrived during a replay.
func (e *Engine) heldEvents(ctx context.Context, out *change.Batch) error {
	if len(e.held) == 0 {
		return nil
	}
	held := e.held
	e.held = nil
	for i := range held {
		if err := e.event(ctx, e.inputs[held[i].Table.ID()], &held[i]); err != nil {
			return err
		}
	}
	return e.finish(ctx, out)
}

// nextEventPos is the position of the next outputs of events processed
// alone: after every position the engine has seen or given.
func (e *Engine) nextEventPos() change.Position {
	p := max(e.done, e.lastAck, e.eventPos)
	for _, in := range e.order {
		p = max(p, in.snapPos)
	}
	e.eventSeq++
	e.eventPos = p
	return change.Position{CommitLSN: p, LSN: change.LSN(eventSeqBase + e.eventSeq)}
}

// passed forgets the events of a stream that passes them through once
// every view reading it has seen them (a view whose whole output is still
// to come sees them in it).
func (e *Engine) passed(ctx context.Context, in *input) error {
	if !in.event || in.keep {
		return nil
	}
	for _, v := range in.views {
		if !v.live && v.stopped == "" {
			return nil
		}
	}
	if err := e.exec(ctx, "DELETE FROM "+in.quoted); err != nil {
		return fmt.Errorf("event stream %s: %w", in.id, err)
	}
	for _, v := range in.views {
		if err := e.exec(ctx, "DELETE FROM "+v.outTable()); err != nil {
			return fmt.Errorf("view %s: %w", v.spec.Name, err)
		}
	}
	return nil
}

// loadMarks reads the stored marks of the event streams (StreamMarks).
func (e *Engine) loadMarks(ctx context.Context) error {
	rows, err := e.conn.QueryContext(ctx, `SELECT stream, shard, seq FROM "_sluice"."event_marks"`)
	if err != nil {
		return fmt.Errorf("read event marks: %w", err)
	}
	defer rows.Close()
	marks := map[string]map[string]string{}
	for rows.Next() {
		var st, sh, seq string
		if err := rows.Scan(&st, &sh, &seq); err != nil {
			return fmt.Errorf("read event marks: %w", err)
		}
		if marks[st] == nil {
			marks[st] = map[string]string{}
		}
		marks[st][sh] = seq
	}
	if err := rows.Err(); err != nil {
		return err
	}
	e.stopMu.Lock()
	e.marks = marks
	e.stopMu.Unlock()
	return nil
}

// saveMarks stores the marks of the events written in the open DuckDB
// transaction, which commits them with their effect.
func (e *Engine) saveMarks(ctx context.Context) error {
	for k, seq := range e.pendMarks {
		if err := e.exec(ctx, `DELETE FROM "_sluice"."event_marks" WHERE stream = ? AND shard = ?`, k.stream, k.shard); err != nil {
			return fmt.Errorf("store event marks: %w", err)
		}
		if err := e.exec(ctx, `INSERT INTO "_sluice"."event_marks" VALUES (?, ?, ?)`, k.stream, k.shard, seq); err != nil {
			return fmt.Errorf("store event marks: %w", err)
		}
		delete(e.pendMarks, k)
	}
	return nil
}

// StreamMarks returns the marks of an event stream's shards as the state
// file held them when the engine was opened: the sequence (or offset) of
// the last event processed, by shard (or partition). A reader goes on
// after them. Safe to call from any goroutine.
func (e *Engine) StreamMarks(_ context.Context, stream string) (map[string]string, error) {
	e.stopMu.Lock()
	defer e.stopMu.Unlock()
	out := map[string]string{}
	for k, v := range e.marks[stream] {
		out[k] = v
	}
	return out, nil
}

// Resend makes the next Apply emit again the logged outputs of a view over
// events after the position its target table holds: the source's replay
// brings no events, so outputs the state committed and the target did not
// would be lost otherwise. Views over tables alone need nothing: their
// outputs come again with the replayed transactions.
func (e *Engine) Resend(view change.TableID, applied change.Position) {
	v := e.byName[view.Schema+"."+view.Name]
	if v == nil || !v.readsEvents() {
		return
	}
	if e.resend == nil {
		e.resend = map[string]change.Position{}
	}
	e.resend[v.slug()] = applied
}

// resendLogged emits what Resend asked for.
func (e *Engine) resendLogged(ctx context.Context, out *change.Batch) error {
	for name, after := range e.resend {
		v := e.byName[name]
		delete(e.resend, name)
		if v == nil || !v.live || v.stopped != "" {
			continue
		}
		n, err := e.logged(ctx, out, func(*compiled) bool { return true },
			`WHERE view_name = ? AND (commit_lsn > ? OR commit_lsn = ? AND seq > ?) ORDER BY commit_lsn, seq`,
			name, uint64(after.CommitLSN), uint64(after.CommitLSN), int64(after.LSN))
		if err != nil {
			return err
		}
		if n > 0 {
			e.log.Info("view over events: outputs the target lacked sent again", "view", name, "changes", n)
		}
	}
	return nil
}
