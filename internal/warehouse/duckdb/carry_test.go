package duckdb

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

func carryTable() *change.Table {
	return &change.Table{Schema: "main", Name: "carried", Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "v", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	}}
}

func reads(tbl *change.Table, from, n int, pos change.Position) *change.Batch {
	b := &change.Batch{}
	for i := from; i < from+n; i++ {
		s := strconv.Itoa(i)
		b.Changes = append(b.Changes, change.Change{Op: change.OpRead, Table: tbl, Pos: pos,
			After: []change.Value{change.V(change.KindInt, s), change.V(change.KindText, "v"+s)}})
	}
	return b
}

func count(t *testing.T, tg *Target, id change.TableID) int {
	t.Helper()
	var n int
	if err := tg.DB().QueryRow("SELECT count(*) FROM " + id.Quoted()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Snapshot rows of a fresh table wait uncommitted until the batch with
// the marker (or CarryRows of them); closed before it, they are gone and
// the table is still to snapshot, as after a crash.
func TestCarriedSnapshotRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "carry.duckdb")
	tbl := carryTable()
	pos := change.Position{CommitLSN: 100}

	tg := open(t, path, Options{})
	if err := tg.Reset(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := tg.Apply(ctx, reads(tbl, i*100, 100, pos)); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, tg, tbl.ID()); n != 0 {
		t.Errorf("%d rows visible before the marker, want them carried uncommitted", n)
	}
	tg.Close()

	tg = open(t, path, Options{})
	st, err := tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[tbl.ID()].Snapshotted {
		t.Fatalf("state %+v after a close with carried rows: want not snapshotted", st[tbl.ID()])
	}
	if n := count(t, tg, tbl.ID()); n != 0 {
		t.Errorf("%d rows after a close with carried rows, want 0", n)
	}

	// The run that snapshots it again: its marker commits everything.
	if err := tg.Reset(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	tg.runner.CarryRows = 250 // the third batch commits, the fourth waits for the marker
	for i := range 4 {
		if err := tg.Apply(ctx, reads(tbl, i*100, 100, pos)); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, tg, tbl.ID()); n != 300 {
		t.Errorf("%d rows visible after 400 with CarryRows 250, want 300", n)
	}
	last := reads(tbl, 400, 100, pos)
	last.Snapshotted = []change.SnapshotDone{{Table: tbl, Pos: pos}}
	if err := tg.Apply(ctx, last); err != nil {
		t.Fatal(err)
	}
	if n := count(t, tg, tbl.ID()); n != 500 {
		t.Errorf("%d rows after the marker, want 500", n)
	}
	if st, err := tg.State(ctx); err != nil || !st[tbl.ID()].Snapshotted {
		t.Errorf("state after the marker: %+v, %v; want snapshotted", st[tbl.ID()], err)
	}
}

// A batch handed again while its rows wait uncommitted (a retry of a batch
// whose commit was reported failed but happened) commits them first and
// then changes nothing.
func TestCarriedRowsRedelivered(t *testing.T) {
	ctx := context.Background()
	tg := open(t, filepath.Join(t.TempDir(), "again.duckdb"), Options{})
	tbl := carryTable()
	pos := change.Position{CommitLSN: 100}
	if err := tg.Reset(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	for _, from := range []int{0, 100, 50} {
		if err := tg.Apply(ctx, reads(tbl, from, 100, pos)); err != nil {
			t.Fatalf("apply rows %d..: %v", from, err)
		}
	}
	if n := count(t, tg, tbl.ID()); n != 200 {
		t.Errorf("%d rows, want 200", n)
	}
}

// A batch that fails while earlier rows wait in its transaction loses
// them: the run must stop (Fatal) so that the next one snapshots again.
func TestCarriedRowsLostIsFatal(t *testing.T) {
	ctx := context.Background()
	tg := open(t, filepath.Join(t.TempDir(), "lost.duckdb"), Options{})
	tbl := carryTable()
	pos := change.Position{CommitLSN: 100}
	if err := tg.Reset(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	if err := tg.Apply(ctx, reads(tbl, 0, 100, pos)); err != nil {
		t.Fatal(err)
	}
	bad := reads(tbl, 100, 10, pos)
	bad.Changes[5].After[0] = change.Null // refused: the key column is NOT NULL
	err := tg.Apply(ctx, bad)
	var te *pipeline.TargetError
	if !errors.As(err, &te) || te.Class != pipeline.Fatal {
		t.Fatalf("apply over carried rows that fails: %v, want a Fatal TargetError", err)
	}
	// The table is no longer fresh: nothing more is appended to it blindly.
	if err := tg.Apply(ctx, reads(tbl, 1000, 10, pos)); err != nil {
		t.Fatalf("apply after the loss: %v", err)
	}
	if tg.runner.Carrying() != 0 {
		t.Errorf("rows carried after the loss, want them committed with their batch")
	}
}
