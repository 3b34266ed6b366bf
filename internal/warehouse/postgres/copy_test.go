package postgres

import (
	"context"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestArraysOfAwkwardTypes: box arrays (';' between elements), nested
// arrays and quoting survive COPY into a Postgres target.
func TestArraysOfAwkwardTypes(t *testing.T) {
	ctx := context.Background()
	tg := open(t, newDB(t), Options{})
	tbl := &change.Table{Schema: "public", Name: "shapes", Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "boxes", Type: change.Type{Name: "box[]", Kind: change.KindArray, Elem: change.KindText, Base: "box"}},
		{Name: "grid", Type: change.Type{Name: "integer[]", Kind: change.KindArray, Elem: change.KindInt, Base: "integer"}},
		{Name: "words", Type: change.Type{Name: "text[]", Kind: change.KindArray, Elem: change.KindText, Base: "text"}},
	}}
	T := func(s string) change.Value { return change.V(change.KindText, s) }
	I := func(s string) change.Value { return change.V(change.KindInt, s) }
	c := change.Change{Op: change.OpInsert, Table: tbl, Pos: warehousetest.Pos(1), After: []change.Value{
		I("1"),
		change.Array(T("(1,1),(0,0)"), T("(2,2),(1,1)")),
		change.Array(change.Array(I("1"), change.Null), change.Array(change.Null, I("4"))),
		change.Array(T(`a,b`), T(`with "quote" and \ backslash`), change.Null, T("NULL"), T("tab\tnewline\n")),
	}}
	if err := tg.Apply(ctx, &change.Batch{Changes: []change.Change{c}}); err != nil {
		t.Fatal(err)
	}
	got := rows(t, tg.Pool(), tbl.ID(), []string{"boxes", "grid", "words"})
	want := []string{`{(1,1),(0,0);(2,2),(1,1)}`, `{{1,NULL},{NULL,4}}`, `{"a,b","with \"quote\" and \\ backslash",NULL,"NULL","tab	newline
"}`}
	for i, w := range want {
		if got[0][i] == nil || *got[0][i] != w {
			t.Errorf("column %d: got %v, want %q", i, got[0][i], w)
		}
	}
}
