package view

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func intT() change.Type  { return change.Type{Name: "integer", Kind: change.KindInt} }
func textT() change.Type { return change.Type{Name: "text", Kind: change.KindText} }
func numT() change.Type  { return change.Type{Name: "numeric(12,2)", Kind: change.KindNumeric} }

func col(name string, t change.Type, key bool) change.Column {
	return change.Column{Name: name, Type: t, Nullable: !key, Key: key}
}

func table(schema, name string, cols ...change.Column) *change.Table {
	t := &change.Table{Schema: schema, Name: name, Columns: cols, Version: 1}
	for i, c := range cols {
		t.Columns[i].Num = i + 1
		if c.Key {
			t.Key = append(t.Key, i)
		}
	}
	return t
}

func I(n int) change.Value    { return change.V(change.KindInt, fmt.Sprint(n)) }
func S(s string) change.Value { return change.V(change.KindText, s) }
func N(s string) change.Value { return change.V(change.KindNumeric, s) }

var (
	customers = table("public", "customers", col("id", intT(), true), col("name", textT(), false), col("tier", textT(), false))
	orders    = table("public", "orders", col("id", intT(), true), col("customer_id", intT(), false), col("amount", numT(), false), col("status", textT(), false), col("note", textT(), false))
)

// tx builds one source transaction's changes at commit LSN lsn.
type tx struct {
	lsn     change.LSN
	changes []change.Change
}

func (t *tx) add(op change.Op, tbl *change.Table, before, after []change.Value) *tx {
	t.changes = append(t.changes, change.Change{Op: op, Table: tbl, Before: before, After: after,
		Pos: change.Position{CommitLSN: t.lsn, LSN: t.lsn - 100 + change.LSN(len(t.changes))}, TxID: uint32(t.lsn)})
	return t
}
func (t *tx) ins(tbl *change.Table, row ...change.Value) *tx {
	return t.add(change.OpInsert, tbl, nil, row)
}
func (t *tx) upd(tbl *change.Table, row ...change.Value) *tx {
	return t.add(change.OpUpdate, tbl, nil, row)
}
func (t *tx) del(tbl *change.Table, row ...change.Value) *tx {
	return t.add(change.OpDelete, tbl, row, nil)
}

func (t *tx) batch() *change.Batch { return &change.Batch{Changes: t.changes, Ack: t.lsn} }

// snapshot is a batch of snapshot rows for the tables, all at pos.
func snapshot(pos change.LSN, rows map[*change.Table][][]change.Value) *change.Batch {
	b := &change.Batch{}
	var tbls []*change.Table
	for t := range rows {
		tbls = append(tbls, t)
	}
	slices.SortFunc(tbls, func(a, b *change.Table) int { return strings.Compare(a.Name, b.Name) })
	for _, t := range tbls {
		for _, r := range rows[t] {
			b.Changes = append(b.Changes, change.Change{Op: change.OpRead, Table: t, After: r, Pos: change.Position{CommitLSN: pos}})
		}
		b.Snapshotted = append(b.Snapshotted, change.SnapshotDone{Table: t, Pos: change.Position{CommitLSN: pos}})
	}
	return b
}

func open(t *testing.T, path string, specs []Spec, inputs ...*change.Table) *Engine {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "views.db")
	}
	e, err := Open(context.Background(), path, specs, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func apply(t *testing.T, e *Engine, b *change.Batch) *change.Batch {
	t.Helper()
	out, err := e.Apply(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// describe renders output changes compactly for assertions.
func describe(b *change.Batch) []string {
	var s []string
	for _, c := range b.Changes {
		row := c.After
		if c.Op == change.OpDelete {
			row = c.Before
		}
		var vals []string
		for _, v := range row {
			vals = append(vals, v.String())
		}
		s = append(s, fmt.Sprintf("%s %s %s", c.Table.Name, c.Op, strings.Join(vals, ",")))
	}
	return s
}
