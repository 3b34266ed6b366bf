package change

import (
	"fmt"
	"time"
)

// Op is what happened to a row.
type Op uint8

const (
	OpRead     Op = iota + 1 // a row read by the initial snapshot ("r")
	OpInsert                 // "c"
	OpUpdate                 // "u"
	OpDelete                 // "d"
	OpTruncate               // the whole table was emptied ("t")
)

var opCodes = [...]string{OpRead: "r", OpInsert: "c", OpUpdate: "u", OpDelete: "d", OpTruncate: "t"}

// String returns the one-letter code used in change records.
func (o Op) String() string {
	if o >= OpRead && o <= OpTruncate {
		return opCodes[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ParseOp is the inverse of Op.String.
func ParseOp(s string) (Op, error) {
	for o := OpRead; o <= OpTruncate; o++ {
		if opCodes[o] == s {
			return o, nil
		}
	}
	return 0, fmt.Errorf("unknown op %q: want one of r, c, u, d, t", s)
}

// Change is one row-level event. It is the only thing stages hand each other.
//
// Before and After are aligned with Table.Columns. After is set for reads,
// inserts and updates. Before is set for deletes (at least the key columns;
// every column under REPLICA IDENTITY FULL) and for updates that changed the
// key or whose table has REPLICA IDENTITY FULL; otherwise it is nil. A
// truncate has neither.
type Change struct {
	Op         Op
	Table      *Table
	Before     []Value
	After      []Value
	Pos        Position
	TxID       uint32
	CommitTime time.Time
}

// Snapshot reports whether the change was read by a snapshot.
func (c *Change) Snapshot() bool { return c.Op == OpRead }

// Key returns the identity values (Table.Identity) of the row the change
// leaves behind: the new row's for reads, inserts and updates, the old
// row's for deletes; nil for truncates. For a keyless table that is the
// whole row.
func (c *Change) Key() []Value {
	switch c.Op {
	case OpRead, OpInsert, OpUpdate:
		return pick(c.After, c.Table.Identity())
	case OpDelete:
		return pick(c.Before, c.Table.Identity())
	}
	return nil
}

// OldKey returns the identity the row had before an update that changed
// it, or nil when it did not change. Downstream, such an update is a delete
// of the old identity followed by an upsert of the new one. For a keyless
// table every update that changed a value changes the identity: it removes
// one row equal to Before and adds one equal to After.
func (c *Change) OldKey() []Value {
	if c.Op != OpUpdate || c.Before == nil {
		return nil
	}
	id := c.Table.Identity()
	old := pick(c.Before, id)
	for i, k := range id {
		if !old[i].Equal(c.After[k]) {
			return old
		}
	}
	return nil
}

func pick(row []Value, idx []int) []Value {
	if row == nil {
		return nil
	}
	out := make([]Value, len(idx))
	for i, k := range idx {
		out[i] = row[k]
	}
	return out
}

// Size estimates the memory a change holds, for bounding batches in bytes.
func (c *Change) Size() int {
	n := 96
	for _, v := range c.Before {
		n += v.Size()
	}
	for _, v := range c.After {
		n += v.Size()
	}
	return n
}
