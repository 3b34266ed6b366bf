package warehouse

import (
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// In stream mode a table's position is its last truncate: records written
// before it (a lagging shard, a redelivery) are dropped, the same truncate
// arriving on another shard is skipped, and snapshot rows at the truncate's
// own position (a producer's reset marker) survive it.
func TestStreamModeTruncateWatermark(t *testing.T) {
	tbl := &change.Table{Schema: "public", Name: "t", Key: []int{0}, Version: 1,
		Columns: []change.Column{{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true}}}
	row := func(op change.Op, id string, c, l change.LSN) change.Change {
		return change.Change{Op: op, Table: tbl, After: []change.Value{change.V(change.KindInt, id)}, Pos: change.Position{CommitLSN: c, LSN: l}}
	}
	trunc := func(c, l change.LSN) change.Change {
		return change.Change{Op: change.OpTruncate, Table: tbl, Pos: change.Position{CommitLSN: c, LSN: l}}
	}
	state := map[change.TableID]change.TableState{tbl.ID(): {Applied: change.Position{CommitLSN: 100}}}

	b := &change.Batch{Changes: []change.Change{
		row(change.OpInsert, "1", 50, 40), // before the stored truncate: a lagging shard
		trunc(100, 0),                     // the stored truncate again, from another shard
		row(change.OpRead, "2", 100, 0),   // snapshot row at the marker's position
		row(change.OpInsert, "3", 150, 140),
		trunc(200, 0), // a new reset marker: drops 2 and 3
		row(change.OpRead, "4", 200, 0),
	}}
	plans := Plan(b, state, ModeStream)
	if len(plans) != 1 {
		t.Fatalf("%d plans", len(plans))
	}
	tp := plans[0]
	var ids []string
	truncs := 0
	for _, s := range tp.Segments {
		if s.Truncate {
			truncs++
		}
		for _, r := range s.Rows {
			ids = append(ids, r.Values[0].Text)
		}
	}
	if len(ids) != 1 || ids[0] != "4" {
		t.Errorf("rows %v, want only 4", ids)
	}
	if truncs != 1 || !tp.hasTrunc || tp.truncPos != (change.Position{CommitLSN: 200}) {
		t.Errorf("truncates %d at %v, want one at 200", truncs, tp.truncPos)
	}
}
