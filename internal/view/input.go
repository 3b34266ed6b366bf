package view

import (
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// input is one table the views read, as the state file stores it.
type input struct {
	id     change.TableID
	tbl    *change.Table // the schema last seen
	stored []storedCol   // the stored table's columns, in stored order
	views  []*compiled

	snapshotted bool
	snapPos     change.LSN // changes committed at or before it are in the snapshot
	snapping    bool       // snapshot rows are arriving (the table was emptied for them)
	stale       bool       // a column was retyped: its stored values are gone until a new snapshot

	// An event stream's table (see EventStream): events pass through it
	// unless keep.
	event, keep bool
	stream      string

	quoted, old, delta, stage string // quoted table names
	fresh, victims            string
	mapping                   map[*change.Table][]int

	touched bool // by the source transaction in progress
	written bool // its stored, old or delta rows were written in the open DuckDB transaction
	chunk   []*change.Change
	sample  []string // a few keys it touched, for error messages
}

type storedCol struct {
	name string
	ct   warehouse.ColType
	duck string
}

func newInput(t *change.Table) *input {
	id := t.ID()
	slug := id.Schema + "." + id.Name
	return &input{id: id, tbl: t, quoted: id.Quoted(), mapping: map[*change.Table][]int{},
		old:     `"_sluice".` + change.QuoteIdent("old."+slug),
		delta:   `"_sluice".` + change.QuoteIdent("delta."+slug),
		stage:   `"temp"."main".` + change.QuoteIdent("stage."+slug),
		fresh:   `"temp"."main".` + change.QuoteIdent("new."+slug),
		victims: `"temp"."main".` + change.QuoteIdent("victims."+slug)}
}

func (in *input) keyed() bool { return len(in.tbl.Key) > 0 }

// column finds a column of the current schema by name (exact, then
// case-insensitive), or -1.
func (in *input) column(name string) int {
	if i := in.tbl.Column(name); i >= 0 {
		return i
	}
	for i, c := range in.tbl.Columns {
		if strings.EqualFold(c.Name, name) {
			return i
		}
	}
	return -1
}

func (in *input) names() []string {
	n := make([]string, len(in.tbl.Columns))
	for i, c := range in.tbl.Columns {
		n[i] = c.Name
	}
	return n
}

// colsOf maps the stored columns to the columns of schema t (-1: absent).
func (in *input) colsOf(t *change.Table) []int {
	if m, ok := in.mapping[t]; ok {
		return m
	}
	m := make([]int, len(in.stored))
	for i, s := range in.stored {
		m[i] = t.Column(s.name)
	}
	in.mapping[t] = m
	return m
}

// storedKey is the stored index of each key column of the current schema.
func (in *input) storedKey() []int {
	out := make([]int, len(in.tbl.Key))
	for i, k := range in.tbl.Key {
		for j, s := range in.stored {
			if s.name == in.tbl.Columns[k].Name {
				out[i] = j
			}
		}
	}
	return out
}

func (in *input) storedNames() []string {
	n := make([]string, len(in.stored))
	for i, s := range in.stored {
		n[i] = s.name
	}
	return n
}
