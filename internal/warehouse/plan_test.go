package warehouse

import (
	"reflect"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func tbl() *change.Table {
	return &change.Table{Schema: "public", Name: "t", Key: []int{0}, Columns: []change.Column{
		{Name: "k", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "v", Type: change.Type{Name: "text", Kind: change.KindText}},
	}}
}

func pos(i int) change.Position {
	return change.Position{CommitLSN: change.LSN(100 * i), LSN: change.LSN(100*i - 1)}
}

func vals(k, v string) []change.Value {
	if v == "<u>" {
		return []change.Value{change.V(change.KindInt, k), change.Unchanged}
	}
	return []change.Value{change.V(change.KindInt, k), change.V(change.KindText, v)}
}

func ch(op change.Op, i int, k, v string) change.Change {
	t := tbl()
	c := change.Change{Op: op, Table: t, Pos: pos(i)}
	switch op {
	case change.OpDelete:
		c.Before = vals(k, v)
	case change.OpTruncate:
	default:
		c.After = vals(k, v)
	}
	return c
}

// rowsOf renders a plan's rows of one segment as "k=v@i" ("-k@i" for deletes).
func rowsOf(seg *Segment) []string {
	var out []string
	for _, r := range seg.Rows {
		s := r.Values[0].Text
		if r.Delete {
			s = "-" + s
		} else {
			s += "=" + r.Values[1].String()
		}
		out = append(out, s+"@"+r.Pos.String())
	}
	return out
}

func TestPlanReduce(t *testing.T) {
	key := func(before, after string) change.Change {
		c := ch(change.OpUpdate, 0, after, "moved")
		c.Before = vals(before, "x")
		return c
	}
	moved := key("1", "9")
	moved.Pos = pos(3)
	cases := []struct {
		name  string
		cs    []change.Change
		state change.TableState
		mode  Mode
		want  []string
		trunc bool
	}{
		{name: "latest wins by position, not arrival",
			cs:   []change.Change{ch(change.OpInsert, 1, "1", "a"), ch(change.OpUpdate, 3, "1", "c"), ch(change.OpUpdate, 2, "1", "b")},
			mode: ModeStream, want: []string{"1=c@" + pos(3).String()}},
		{name: "replays at or before the applied position are dropped",
			cs:    []change.Change{ch(change.OpInsert, 1, "1", "a"), ch(change.OpInsert, 2, "2", "b"), ch(change.OpUpdate, 3, "1", "c")},
			state: change.TableState{Applied: pos(2)},
			want:  []string{"1=c@" + pos(3).String()}},
		{name: "key update deletes the old key",
			cs:   []change.Change{ch(change.OpInsert, 1, "1", "a"), moved},
			want: []string{"-1@" + pos(3).String(), "9=moved@" + pos(3).String()}},
		{name: "delete then reinsert",
			cs:   []change.Change{ch(change.OpDelete, 1, "1", ""), ch(change.OpInsert, 2, "1", "new")},
			want: []string{"1=new@" + pos(2).String()}},
		{name: "truncate keeps only later changes",
			cs:    []change.Change{ch(change.OpInsert, 1, "1", "a"), ch(change.OpTruncate, 2, "", ""), ch(change.OpInsert, 3, "2", "b")},
			want:  []string{"2=b@" + pos(3).String()},
			trunc: true},
		{name: "unchanged takes an earlier full value in the batch",
			cs:   []change.Change{ch(change.OpUpdate, 1, "1", "full"), ch(change.OpUpdate, 2, "1", "<u>")},
			want: []string{"1=full@" + pos(2).String()}},
		{name: "unchanged arriving first is filled by an older full value arriving late",
			cs:   []change.Change{ch(change.OpUpdate, 2, "1", "<u>"), ch(change.OpUpdate, 1, "1", "full")},
			mode: ModeStream, want: []string{"1=full@" + pos(2).String()}},
		{name: "unchanged with no earlier value stays unchanged",
			cs:   []change.Change{ch(change.OpUpdate, 1, "1", "<u>")},
			want: []string{"1=<unchanged>@" + pos(1).String()}},
		{name: "changes at or before the snapshot's rows in the same batch are in the snapshot",
			cs: []change.Change{
				ch(change.OpInsert, 1, "7", "deleted before the snapshot"), // a replay from before the snapshot
				{Op: change.OpRead, Table: tbl(), After: vals("1", "r"), Pos: pos(2)},
				ch(change.OpDelete, 2, "1", ""), // at the snapshot's position: in it already
				ch(change.OpUpdate, 3, "1", "after"),
			},
			want: []string{"1=after@" + pos(3).String()}},
		{name: "snapshot reads are replays once the table is snapshotted",
			cs:    []change.Change{{Op: change.OpRead, Table: tbl(), After: vals("1", "r"), Pos: pos(1)}},
			state: change.TableState{Snapshotted: true, Applied: pos(1)}},
		{name: "snapshot reads at the applied position still apply before the snapshot completes",
			cs:    []change.Change{{Op: change.OpRead, Table: tbl(), After: vals("1", "r"), Pos: pos(1)}},
			state: change.TableState{Applied: pos(1)},
			want:  []string{"1=r@" + pos(1).String()}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &change.Batch{Changes: c.cs}
			plans := Plan(b, map[change.TableID]change.TableState{{Schema: "public", Name: "t"}: c.state}, c.mode)
			var got []string
			trunc := false
			for _, tp := range plans {
				for _, s := range tp.Segments {
					got = append(got, rowsOf(s)...)
					trunc = trunc || s.Truncate
				}
			}
			if !reflect.DeepEqual(got, c.want) || trunc != c.trunc {
				t.Fatalf("got %q (truncate %v), want %q (truncate %v)", got, trunc, c.want, c.trunc)
			}
		})
	}
}

func TestPlanSegmentsBySchema(t *testing.T) {
	v1 := tbl()
	v2 := tbl()
	v2.Columns = append(v2.Columns, change.Column{Name: "x", Type: change.Type{Name: "text", Kind: change.KindText}})
	v1b := tbl() // same shape as v1, another pointer
	cs := []change.Change{
		{Op: change.OpInsert, Table: v1, After: vals("1", "a"), Pos: pos(1)},
		{Op: change.OpInsert, Table: v1b, After: vals("2", "b"), Pos: pos(2)},
		{Op: change.OpInsert, Table: v2, After: append(vals("3", "c"), change.V(change.KindText, "x")), Pos: pos(3)},
	}
	plans := Plan(&change.Batch{Changes: cs}, nil, ModeReplication)
	if len(plans) != 1 || len(plans[0].Segments) != 2 {
		t.Fatalf("want one table with two segments, got %d tables", len(plans))
	}
	s0 := plans[0].Segments[0]
	if len(s0.Rows) != 2 {
		t.Fatalf("first segment rows %d, want 2", len(s0.Rows))
	}
	s0.Project(plans[0].Final())
	if got := s0.Rows[0].Values; len(got) != 3 || !got[2].IsNull() {
		t.Fatalf("projected row %v, want NULL in the new column", got)
	}
	if plans[0].MaxPos != pos(3) {
		t.Fatalf("max pos %v", plans[0].MaxPos)
	}
}

func TestTypeOf(t *testing.T) {
	cases := []struct {
		typ  change.Type
		fam  Family
		pg   string
		prec int
	}{
		{change.Type{Name: "integer", Kind: change.KindInt}, FamInt32, "integer", 0},
		{change.Type{Name: "numeric(10,2)", Kind: change.KindNumeric}, FamDecimal, "numeric(10,2)", 10},
		{change.Type{Name: "numeric(50,10)", Kind: change.KindNumeric}, FamNumeric, "numeric(50,10)", 0},
		{change.Type{Name: "numeric", Kind: change.KindNumeric}, FamNumeric, "numeric", 0},
		{change.Type{Name: "timestamp(3) with time zone", Kind: change.KindTimestampTZ}, FamTimestampTZ, "timestamp(3) with time zone", 0},
		{change.Type{Name: "character(5)", Kind: change.KindText}, FamChar, "character(5)", 0},
		{change.Type{Name: "mood", Kind: change.KindText}, FamText, "text", 0},
		{change.Type{Name: "posint", Kind: change.KindInt, Base: "integer"}, FamInt32, "integer", 0},
		{change.Type{Name: "public.money2", Kind: change.KindNumeric, Base: "numeric(12,2)"}, FamDecimal, "numeric(12,2)", 12},
		{change.Type{Name: "mood[]", Kind: change.KindArray, Elem: change.KindText, Base: "mood"}, FamText, "text[]", 0},
		{change.Type{Name: "integer[]", Kind: change.KindArray, Elem: change.KindInt, Base: "integer"}, FamInt32, "integer[]", 0},
		{change.Type{Name: "hstore", Kind: change.KindText}, FamText, "text", 0},
		{change.Type{Name: "regclass", Kind: change.KindText}, FamText, "text", 0},
	}
	for _, c := range cases {
		got := TypeOf(change.Column{Name: "c", Type: c.typ})
		if got.Family != c.fam || got.PGName != c.pg || got.Precision != c.prec {
			t.Errorf("%s: got %+v, want family %d, %s, precision %d", c.typ.Name, got, c.fam, c.pg, c.prec)
		}
	}
}

// Snapshot reads are appended without a key index (plan with
// distinctReads) until another change of their table comes: that change
// still finds and replaces the read of its key.
func TestPlanReadsThenChanges(t *testing.T) {
	b := &change.Batch{Changes: []change.Change{
		ch(change.OpRead, 1, "1", "a"), ch(change.OpRead, 1, "2", "b"), ch(change.OpRead, 1, "3", "c"),
		ch(change.OpUpdate, 2, "2", "B"), ch(change.OpDelete, 3, "3", ""), ch(change.OpInsert, 4, "4", "d"),
	}}
	for _, distinct := range []bool{false, true} {
		tps := plan(b, nil, ModeReplication, distinct)
		if len(tps) != 1 || len(tps[0].Segments) != 1 {
			t.Fatalf("distinct=%v: plan %+v", distinct, tps)
		}
		got := rowsOf(tps[0].Segments[0])
		want := []string{"1=a@0/64:0/63", "2=B@0/C8:0/C7", "-3@0/12C:0/12B", "4=d@0/190:0/18F"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("distinct=%v: rows %v, want %v", distinct, got, want)
		}
		if tps[0].Segments[0].Reads() {
			t.Errorf("distinct=%v: a segment with an update counts as reads only", distinct)
		}
	}
	reads := plan(&change.Batch{Changes: b.Changes[:3]}, nil, ModeReplication, true)
	if seg := reads[0].Segments[0]; !seg.Reads() || len(seg.Rows) != 3 {
		t.Errorf("reads alone: %v, Reads %v", rowsOf(seg), seg.Reads())
	}
}
