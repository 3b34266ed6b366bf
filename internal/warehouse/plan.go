package warehouse

import (
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// Mode says how a batch's positions relate to the stored per-table state.
type Mode uint8

const (
	// ModeReplication drops changes at or before a table's applied position:
	// the batch comes from one replication slot, whose positions only grow.
	ModeReplication Mode = iota
	// ModeStream keeps every change: a stream's shards are separate orders,
	// so a per-table position says nothing about another shard's records.
	// Replays are caught by the stream checkpoints instead.
	//
	// A truncate is the exception: in this mode a table's applied position
	// is the position of the last truncate applied, and changes before it
	// are dropped, so records of a lagging shard written before a truncate
	// cannot resurrect rows after it. A truncate at or before that position
	// (the same truncate, put on every shard by the producer) is skipped.
	ModeStream
)

// Row is one reduced row: the latest change for its key within a segment.
type Row struct {
	Delete bool
	// Values is aligned with the segment's Table.Columns. For deletes only
	// the key columns matter. Unchanged TOAST values stay KindUnchanged:
	// the merge keeps what the target stores for them.
	Values []change.Value
	Pos    change.Position
	// First is the op of the first change of the key in the segment: an
	// insert (or a snapshot read into a fresh table) means the key was not
	// in the target before, so the merge need not delete it first.
	First change.Op
	// Op is the staged op, set by the apply just before loading: 'd'
	// delete, 'u' upsert (delete then insert), 'i' insert of a new key.
	Op byte
	// N is, for a keyless table (change.Table.Keyless), how many rows
	// equal to Values the segment adds (> 0) or removes (< 0, with Delete
	// set); 0 for keyed tables. Values is then always the whole row.
	N int
}

// Segment is a run of one table's changes that share one schema. A schema
// change in the middle of a batch starts a new segment, applied after the
// target is altered.
type Segment struct {
	Table    *change.Table
	Truncate bool // empty the target table before merging Rows
	Rows     []Row
	keys     map[string]int // key -> index in Rows
	// unindexed: Rows are all snapshot reads appended without an entry in
	// keys (see plan's distinctReads); the index is built when another
	// change comes.
	unindexed bool
	reads     bool
}

// Reads reports whether the segment holds only snapshot reads (no truncate,
// no delete), which may be appended without a merge into a fresh table.
func (s *Segment) Reads() bool { return !s.Truncate && s.reads }

// TablePlan is what one batch does to one table.
type TablePlan struct {
	ID       change.TableID // the source table
	Segments []*Segment
	// MaxPos is the highest position among the table's changes kept, zero if none.
	MaxPos change.Position
	// Snapshot is set when the batch completes the table's snapshot.
	Snapshot *change.SnapshotDone
	truncPos change.Position
	hasTrunc bool
}

// Plan reduces a batch to the rows to merge, table by table, in order of
// first appearance. state is the stored state per table (see Mode).
//
// Within a table the latest change per key wins by Position, never by
// arrival order. An update that changed the key becomes a delete of the old
// key and an upsert of the new one. A truncate drops the table's earlier
// rows in the batch (by position); only changes after it survive. An update
// whose TOASTed value was not sent takes the value of an earlier full row of
// the same key in the batch, if any; otherwise the target's stored value is
// kept at merge time.
func Plan(b *change.Batch, state map[change.TableID]change.TableState, mode Mode) []*TablePlan {
	return plan(b, state, mode, false)
}

// plan is Plan. With distinctReads (replication mode only) snapshot reads
// are taken to have distinct keys, as one snapshot reads every row once,
// and are not indexed by key until a change of another kind joins their
// segment: a snapshot batch then costs no key string and no map entry per
// row. A read repeated anyway (a bug upstream) would reach the target twice,
// where a fresh table's key constraint refuses it and the retry plans again
// without the shortcut.
func plan(b *change.Batch, state map[change.TableID]change.TableState, mode Mode, distinctReads bool) []*TablePlan {
	distinctReads = distinctReads && mode == ModeReplication
	var order []*TablePlan
	plans := map[change.TableID]*TablePlan{}
	get := func(id change.TableID) *TablePlan {
		tp := plans[id]
		if tp == nil {
			tp = &TablePlan{ID: id}
			plans[id] = tp
			order = append(order, tp)
		}
		return tp
	}
	// A table's snapshot position, learnt from this batch's snapshot rows
	// and markers, is a floor too: the stream may start before it (at the
	// slot's confirmed position), and a change at or before it that shares
	// the batch with the snapshot's rows is already in them. Without this
	// floor a replayed insert of a row deleted before the snapshot would
	// come back.
	var floor map[change.TableID]change.Position
	if mode == ModeReplication {
		raise := func(id change.TableID, p change.Position) {
			if floor == nil {
				floor = map[change.TableID]change.Position{}
			}
			if f, ok := floor[id]; !ok || f.Less(p) {
				floor[id] = p
			}
		}
		for i := range b.Changes {
			if c := &b.Changes[i]; c.Op == change.OpRead && !state[c.Table.ID()].Snapshotted {
				raise(c.Table.ID(), c.Pos)
			}
		}
		for i := range b.Snapshotted {
			raise(b.Snapshotted[i].Table.ID(), b.Snapshotted[i].Pos)
		}
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		id := c.Table.ID()
		if mode == ModeReplication {
			st := state[id]
			if f, ok := floor[id]; ok && st.Applied.Less(f) {
				st.Applied = f
			}
			if c.Op == change.OpRead {
				// Snapshot rows all carry the snapshot's position and may
				// span many batches: they are replays only once the
				// snapshot is complete. (The pipeline applies a table's
				// snapshot before its streamed changes; within a batch a
				// later change of the same key wins by position anyway.)
				if st.Snapshotted {
					continue
				}
			} else if !st.Applied.Less(c.Pos) {
				continue
			}
		} else if mode == ModeStream {
			st := state[id]
			if c.Pos.Less(st.Applied) || (c.Op == change.OpTruncate && !st.Applied.Less(c.Pos)) {
				continue
			}
		}
		tp := get(id)
		seg := tp.segment(c.Table)
		if tp.MaxPos.Less(c.Pos) {
			tp.MaxPos = c.Pos
		}
		if seg.Table.Keyless() {
			tp.count(seg, c)
			continue
		}
		switch c.Op {
		case change.OpTruncate:
			tp.truncate(c.Pos, seg)
		case change.OpDelete:
			seg.reads = false
			tp.put(seg, Row{Delete: true, Values: c.Before, Pos: c.Pos, First: c.Op})
		case change.OpRead, change.OpInsert, change.OpUpdate:
			if c.Op == change.OpRead && distinctReads && (seg.unindexed || len(seg.Rows) == 0) &&
				!(tp.hasTrunc && c.Pos.Less(tp.truncPos)) {
				seg.unindexed = true
				seg.Rows = append(seg.Rows, Row{Values: c.After, Pos: c.Pos, First: c.Op})
				continue
			}
			if c.Op != change.OpRead {
				seg.reads = false
			}
			if old := c.OldKey(); old != nil {
				tp.put(seg, Row{Delete: true, Values: c.Before, Pos: c.Pos, First: c.Op})
			}
			tp.put(seg, Row{Values: c.After, Pos: c.Pos, First: c.Op})
		}
	}
	for i := range b.Snapshotted {
		sd := &b.Snapshotted[i]
		tp := get(sd.Table.ID())
		tp.Snapshot = sd
	}
	for _, tp := range order {
		for _, s := range tp.Segments {
			s.keys, s.unindexed = nil, false
			if s.Table.Keyless() {
				s.reduceMultiset()
			}
		}
	}
	return order
}

// count records a keyless table's change as rows added and removed: an
// insert or read adds one row equal to After, a delete removes one equal
// to Before, an update does both. The rows stay one per change until the
// end of Plan (reduceMultiset), so that a truncate drops exactly the
// changes before it, whatever order the changes arrived in.
func (tp *TablePlan) count(seg *Segment, c *change.Change) {
	switch c.Op {
	case change.OpTruncate:
		tp.truncate(c.Pos, seg)
		return
	case change.OpUpdate:
		if c.Before != nil && c.OldKey() == nil {
			return // no value changed: the multiset did not change
		}
	}
	if c.Op != change.OpRead {
		seg.reads = false
	}
	add := func(vals []change.Value, n int) {
		if tp.hasTrunc && c.Pos.Less(tp.truncPos) {
			return
		}
		seg.Rows = append(seg.Rows, Row{Delete: n < 0, Values: vals, Pos: c.Pos, First: c.Op, N: n})
	}
	if c.Op == change.OpDelete || c.Op == change.OpUpdate {
		add(c.Before, -1)
	}
	if c.Op != change.OpDelete {
		add(c.After, 1)
	}
}

// reduceMultiset folds a keyless segment's rows into one per distinct row
// value holding the net count (its position the latest), in order of first
// appearance, dropping values whose changes cancel out. Counts commute, so
// the order of the changes within the segment does not matter: the source
// order guarantees that no count falls below what the target holds.
func (s *Segment) reduceMultiset() {
	at := make(map[string]int, len(s.Rows))
	out := make([]Row, 0, len(s.Rows))
	for _, r := range s.Rows {
		k := rowString(r.Values)
		j, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, r)
			continue
		}
		o := &out[j]
		o.N += r.N
		if o.Pos.Less(r.Pos) {
			o.Pos = r.Pos
		}
		if r.First != change.OpRead {
			o.First = r.First
		}
	}
	kept := out[:0]
	for _, r := range out {
		if r.N != 0 {
			r.Delete = r.N < 0
			kept = append(kept, r)
		}
	}
	s.Rows = kept
}

// rowString encodes a whole row unambiguously, for reducing keyless rows.
func rowString(vals []change.Value) string {
	var b strings.Builder
	for _, v := range vals {
		appendKeyValue(&b, v)
	}
	return b.String()
}

func (tp *TablePlan) segment(t *change.Table) *Segment {
	if n := len(tp.Segments); n > 0 && tp.Segments[n-1].Table.SameShape(t) {
		return tp.Segments[n-1]
	}
	s := &Segment{Table: t, reads: true}
	if !t.Keyless() {
		s.keys = map[string]int{}
	}
	tp.Segments = append(tp.Segments, s)
	return s
}

func (tp *TablePlan) truncate(pos change.Position, seg *Segment) {
	if tp.hasTrunc && !tp.truncPos.Less(pos) {
		return // an earlier truncate arriving late: the later one already cleared more
	}
	tp.hasTrunc, tp.truncPos = true, pos
	seg.Truncate = true
	seg.reads = false
	// Rows before the truncate are gone, in this segment and earlier ones.
	// A row at exactly its position survives: no change shares a WAL
	// position with a truncate, except the snapshot rows that a stream
	// producer's reset marker precedes (both at the snapshot's position).
	for _, s := range tp.Segments {
		kept := s.Rows[:0]
		for _, r := range s.Rows {
			if !r.Pos.Less(pos) {
				kept = append(kept, r)
			}
		}
		s.Rows = kept
		if s.keys != nil && !s.unindexed {
			clear(s.keys)
			for j, r := range s.Rows {
				s.keys[keyString(s.Table, r)] = j
			}
		}
	}
}

func (tp *TablePlan) put(seg *Segment, r Row) {
	if tp.hasTrunc && r.Pos.Less(tp.truncPos) {
		return
	}
	if seg.unindexed {
		// Reads came first without index entries: index them now.
		seg.unindexed = false
		clear(seg.keys)
		for j, old := range seg.Rows {
			seg.keys[keyString(seg.Table, old)] = j
		}
	}
	k := keyString(seg.Table, r)
	j, ok := seg.keys[k]
	if !ok {
		seg.keys[k] = len(seg.Rows)
		seg.Rows = append(seg.Rows, r)
		return
	}
	old := seg.Rows[j]
	if r.Pos.Less(old.Pos) {
		// Arrived late but happened first: it is the key's first op.
		seg.Rows[j].First = r.First
		// An older change arriving late loses, but may still hold a value
		// the newer row left unchanged.
		if !old.Delete && !r.Delete {
			seg.Rows[j].Values = fillUnchanged(old.Values, r.Values)
		}
		return
	}
	if !r.Delete && !old.Delete {
		r.Values = fillUnchanged(r.Values, old.Values)
	}
	r.First = old.First
	seg.Rows[j] = r
}

// fillUnchanged returns newer with its unchanged values taken from older.
// It copies before writing: the values belong to the batch's changes.
func fillUnchanged(newer, older []change.Value) []change.Value {
	var out []change.Value
	for i, v := range newer {
		if v.Kind == change.KindUnchanged && i < len(older) && older[i].Kind != change.KindUnchanged {
			if out == nil {
				out = append([]change.Value(nil), newer...)
			}
			out[i] = older[i]
		}
	}
	if out == nil {
		return newer
	}
	return out
}

// keyString encodes a row's key values unambiguously for the reduction map.
func keyString(t *change.Table, r Row) string {
	if len(t.Key) == 1 && t.Key[0] < len(r.Values) {
		// One key column (the common case): its text itself, with no
		// copy. A column's values share one kind, and no text but bytea's
		// holds a NUL byte (Postgres refuses them), so NUL + kind stands
		// for the values without text of their own (NULL, unchanged), and
		// a value with a NUL takes the long form, which starts with its
		// kind's byte (never NUL) and holds the NUL.
		switch v := r.Values[t.Key[0]]; {
		case v.Kind == change.KindNull || v.Kind == change.KindUnchanged:
			return "\x00" + string(rune('0'+v.Kind))
		case v.Kind != change.KindArray && v.Kind != change.KindBytes && strings.IndexByte(v.Text, 0) < 0:
			return v.Text
		}
	}
	var b strings.Builder
	for _, k := range t.Key {
		var v change.Value
		if k < len(r.Values) {
			v = r.Values[k]
		}
		appendKeyValue(&b, v)
	}
	return b.String()
}

func appendKeyValue(b *strings.Builder, v change.Value) {
	b.WriteByte(byte(v.Kind))
	if v.Kind == change.KindArray {
		b.WriteString(strconv.Itoa(len(v.Elems)))
		b.WriteByte(':')
		for _, e := range v.Elems {
			appendKeyValue(b, e)
		}
		return
	}
	b.WriteString(strconv.Itoa(len(v.Text)))
	b.WriteByte(':')
	b.WriteString(v.Text)
}

// Final is the table's schema at the end of the batch: the last segment's,
// or the snapshot marker's when the batch has no rows for the table.
func (tp *TablePlan) Final() *change.Table {
	if n := len(tp.Segments); n > 0 {
		return tp.Segments[n-1].Table
	}
	return tp.Snapshot.Table
}

// Project rewrites the segment's rows onto another shape of the table,
// matching columns by name: a column the rows lack takes the value rows
// that predate it hold (Column.Missing, else NULL), a column the shape
// lacks is dropped.
func (s *Segment) Project(to *change.Table) {
	idx := make([]int, len(to.Columns))
	for i, c := range to.Columns {
		idx[i] = s.Table.Column(c.Name)
		// The same name with another number is another column (dropped and
		// added again): the segment holds none of its values.
		if k := idx[i]; k >= 0 && c.Num != 0 && s.Table.Columns[k].Num != 0 && c.Num != s.Table.Columns[k].Num {
			idx[i] = -1
		}
	}
	for j, r := range s.Rows {
		vals := make([]change.Value, len(to.Columns))
		for i, k := range idx {
			switch {
			case k >= 0 && k < len(r.Values):
				vals[i] = r.Values[k]
			case k < 0 && !r.Delete && to.Columns[i].Missing != nil:
				vals[i] = *to.Columns[i].Missing
			}
		}
		s.Rows[j].Values = vals
	}
	s.Table = to
}
