package warehousetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Target is what the suite exercises.
type Target interface {
	pipeline.Target
	ApplyStream(ctx context.Context, b *change.Batch) error
	StreamMarks(ctx context.Context, stream string) (map[string]string, error)
	Checksums(ctx context.Context, t *change.Table, buckets int) ([]warehouse.Bucket, error)
	BucketKeys(ctx context.Context, t *change.Table, buckets, id, limit int) ([]warehouse.RowHash, error)
	TableName(source change.TableID) change.TableID
}

// Harness adapts one warehouse to the suite.
type Harness struct {
	// Open returns a new target over an empty database and closes it when
	// the test ends.
	Open func(t *testing.T) Target
	// Rows returns every row of a target table, each listed column cast to
	// text (nil for NULL), sorted by the columns' text.
	Rows func(t *testing.T, tg Target, table change.TableID, cols []string) [][]*string
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Run("Ops", func(t *testing.T) { testOps(t, h) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, h) })
	t.Run("Snapshot", func(t *testing.T) { testSnapshot(t, h) })
	t.Run("SchemaChange", func(t *testing.T) { testSchemaChange(t, h) })
	t.Run("Random", func(t *testing.T) { testRandom(t, h) })
	t.Run("Stream", func(t *testing.T) { testStream(t, h) })
	t.Run("Checksums", func(t *testing.T) { testChecksums(t, h) })
	t.Run("Multiset", func(t *testing.T) { testMultiset(t, h) })
	t.Run("MultisetRandom", func(t *testing.T) { testMultisetRandom(t, h) })
	t.Run("MultisetStream", func(t *testing.T) { testMultisetStream(t, h) })
	t.Run("JSONNull", func(t *testing.T) { testJSONNull(t, h) })
}

// Events is a keyless table: public.events (a integer, b text, c bigint),
// every column nullable, no key (REPLICA IDENTITY FULL at the source).
func Events() *change.Table {
	return &change.Table{Schema: "public", Name: "events", Version: 1, Columns: []change.Column{
		{Name: "a", Type: change.Type{Name: "integer", Kind: change.KindInt}, Nullable: true},
		{Name: "b", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
		{Name: "c", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Nullable: true},
	}}
}

// Items is the suite's table: public.items (k integer key, v text, n bigint).
func Items() *change.Table {
	return &change.Table{Schema: "public", Name: "items", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "k", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "v", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
		{Name: "n", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Nullable: true},
	}}
}

// Pos is the i-th position of a test's history: later i, later position.
func Pos(i int) change.Position {
	return change.Position{CommitLSN: change.LSN(1000 + 10*i), LSN: change.LSN(995 + 10*i)}
}

func row(t *change.Table, vals ...any) []change.Value {
	out := make([]change.Value, len(t.Columns))
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
			out[i] = change.Null
		case change.Value:
			out[i] = v
		case int:
			out[i] = change.V(change.KindInt, strconv.Itoa(v))
		case string:
			out[i] = change.V(t.Columns[i].Type.Kind, v)
		default:
			panic(fmt.Sprintf("row: %T", v))
		}
	}
	return out
}

// Ins, Upd, Del, Read and Trunc build changes of t at position i.
func Ins(t *change.Table, i int, vals ...any) change.Change {
	return change.Change{Op: change.OpInsert, Table: t, After: row(t, vals...), Pos: Pos(i)}
}

func Upd(t *change.Table, i int, before []any, vals ...any) change.Change {
	c := change.Change{Op: change.OpUpdate, Table: t, After: row(t, vals...), Pos: Pos(i)}
	if before != nil {
		c.Before = row(t, before...)
	}
	return c
}

func Del(t *change.Table, i int, vals ...any) change.Change {
	return change.Change{Op: change.OpDelete, Table: t, Before: row(t, vals...), Pos: Pos(i)}
}

func Read(t *change.Table, snap change.Position, vals ...any) change.Change {
	return change.Change{Op: change.OpRead, Table: t, After: row(t, vals...), Pos: snap}
}

func Trunc(t *change.Table, i int) change.Change {
	return change.Change{Op: change.OpTruncate, Table: t, Pos: Pos(i)}
}

func batch(cs ...change.Change) *change.Batch { return &change.Batch{Changes: cs} }

func apply(t *testing.T, tg Target, b *change.Batch) {
	t.Helper()
	if err := tg.Apply(context.Background(), b); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func reset(t *testing.T, tg Target, tbl *change.Table) {
	t.Helper()
	if err := tg.Reset(context.Background(), tbl); err != nil {
		t.Fatalf("reset: %v", err)
	}
}

// want compares a table with rows written as "k|v|n" ("~" for NULL).
func want(t *testing.T, h Harness, tg Target, tbl *change.Table, rows ...string) {
	t.Helper()
	cols := make([]string, len(tbl.Columns))
	for i, c := range tbl.Columns {
		cols[i] = c.Name
	}
	got := dump(t, h, tg, tbl.ID(), cols)
	exp := slices.Clone(rows)
	slices.Sort(exp)
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("table %s:\n got  %q\n want %q", tbl.ID(), got, exp)
	}
}

func dump(t *testing.T, h Harness, tg Target, id change.TableID, cols []string) []string {
	t.Helper()
	var out []string
	for _, r := range h.Rows(t, tg, tg.TableName(id), cols) {
		parts := make([]string, len(r))
		for i, v := range r {
			if v == nil {
				parts[i] = "~"
			} else {
				parts[i] = *v
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	slices.Sort(out)
	return out
}

func testOps(t *testing.T, h Harness) {
	tg := h.Open(t)
	it := Items()
	reset(t, tg, it)
	apply(t, tg, batch(
		Ins(it, 1, 1, "a", 10),
		Ins(it, 2, 2, "b", nil),
		Ins(it, 3, 3, nil, 30),
		Upd(it, 4, nil, 1, "a2", 11),
		Upd(it, 5, []any{2, "b", nil}, 20, "b", 2), // key 2 -> 20
		Del(it, 6, 3),
		Ins(it, 7, 3, "c-again", 33), // delete then reinsert in one batch
	))
	want(t, h, tg, it, "1|a2|11", "20|b|2", "3|c-again|33")

	// An unchanged TOAST value keeps what the target stores.
	apply(t, tg, batch(Upd(it, 8, nil, 1, change.Unchanged, 12)))
	want(t, h, tg, it, "1|a2|12", "20|b|2", "3|c-again|33")
	// ... and takes an earlier full value of the same key in the batch; a
	// later full value wins.
	apply(t, tg, batch(
		Upd(it, 9, nil, 20, "b-full", 3),
		Upd(it, 10, nil, 20, change.Unchanged, 4),
		Upd(it, 11, nil, 3, change.Unchanged, 34),
		Upd(it, 12, nil, 3, "c-full", 35),
	))
	want(t, h, tg, it, "1|a2|12", "20|b-full|4", "3|c-full|35")

	// A truncate mid-batch: only changes after it survive.
	apply(t, tg, batch(
		Ins(it, 13, 4, "d", 4),
		Upd(it, 14, nil, 1, "gone", 1),
		Trunc(it, 15),
		Ins(it, 16, 5, "e", 5),
		Upd(it, 17, []any{5, "e", 5}, 6, "e6", 6),
		Ins(it, 18, 7, "f\t\"q\"\n\\x", nil),
	))
	want(t, h, tg, it, "6|e6|6", "7|f\t\"q\"\n\\x|~")

	st, err := tg.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st[it.ID()]; got.Applied != Pos(18) || got.Snapshotted {
		t.Fatalf("state after ops: %+v, want applied %v, not snapshotted", got, Pos(18))
	}
	// A batch with only an Ack does nothing.
	if err := tg.Apply(context.Background(), &change.Batch{Ack: 99999}); err != nil {
		t.Fatal(err)
	}
	want(t, h, tg, it, "6|e6|6", "7|f\t\"q\"\n\\x|~")
}

func testReplay(t *testing.T, h Harness) {
	tg := h.Open(t)
	it := Items()
	reset(t, tg, it)
	cs := []change.Change{
		Ins(it, 1, 1, "a", 1), Ins(it, 2, 2, "b", 2), Upd(it, 3, nil, 1, "a2", 1),
		Del(it, 4, 2), Ins(it, 5, 3, "c", 3), Upd(it, 6, []any{3, "c", 3}, 4, "c", 4),
	}
	apply(t, tg, batch(cs...))
	exp := []string{"1|a2|1", "4|c|4"}
	want(t, h, tg, it, exp...)
	apply(t, tg, batch(cs...))
	want(t, h, tg, it, exp...)
	for n := 1; n <= len(cs); n++ {
		apply(t, tg, batch(cs[:n]...))
		want(t, h, tg, it, exp...)
	}
	// A suffix that overlaps the applied position applies only what is new.
	apply(t, tg, batch(append(slices.Clone(cs[4:]), Ins(it, 7, 9, "z", 9))...))
	want(t, h, tg, it, "1|a2|1", "4|c|4", "9|z|9")
}

func testSnapshot(t *testing.T, h Harness) {
	ctx := context.Background()
	tg := h.Open(t)
	it := Items()
	reset(t, tg, it)
	snap := Pos(5)
	b1 := batch(Read(it, snap, 1, "a", 1), Read(it, snap, 2, "b", 2))
	b2 := batch(Read(it, snap, 3, "c", 3))
	apply(t, tg, b1)
	apply(t, tg, b2)
	// A redelivered snapshot batch into the fresh table: no duplicate keys.
	apply(t, tg, b1)
	want(t, h, tg, it, "1|a|1", "2|b|2", "3|c|3")
	// A change not from the snapshot before it completes is applied, and
	// wins over an earlier read of its key in the same batch.
	b3 := batch(Upd(it, 6, nil, 2, "b6", 6), Read(it, snap, 4, "d", 4), Read(it, snap, 2, "b", 2))
	b3.Snapshotted = []change.SnapshotDone{{Table: it, Pos: snap}}
	apply(t, tg, b3)
	st, err := tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st[it.ID()]; !got.Snapshotted || got.Applied != Pos(6) {
		t.Fatalf("state after snapshot: %+v, want snapshotted at %v", got, Pos(6))
	}
	// A table whose stream starts before its snapshot (the slot's
	// confirmed position lags): replays older than the snapshot, in the
	// same batch as its rows or its marker, are already in the snapshot.
	lag := Items()
	lag.Name = "lagging"
	reset(t, tg, lag)
	lb := batch(Ins(lag, 1, 50, "deleted before the snapshot", 0), Del(lag, 2, 50), Ins(lag, 3, 51, "x", 0),
		Read(lag, Pos(4), 51, "x", 0), Ins(lag, 2, 52, "also gone", 0), Upd(lag, 5, nil, 51, "x5", 5))
	lb.Snapshotted = []change.SnapshotDone{{Table: lag, Pos: Pos(4)}}
	apply(t, tg, lb)
	want(t, h, tg, lag, "51|x5|5")
	empty := Items()
	empty.Name = "lagging_empty"
	reset(t, tg, empty)
	eb := batch(Ins(empty, 1, 60, "gone before the snapshot", 0), Ins(empty, 7, 61, "after", 7))
	eb.Snapshotted = []change.SnapshotDone{{Table: empty, Pos: Pos(4)}}
	apply(t, tg, eb)
	want(t, h, tg, empty, "61|after|7")

	// Snapshot reads after the snapshot is complete are replays.
	apply(t, tg, batch(Read(it, snap, 2, "stale", 0), Read(it, snap, 9, "stale", 0)))
	want(t, h, tg, it, "1|a|1", "2|b6|6", "3|c|3", "4|d|4")
	// Reset forgets the state and empties the table.
	reset(t, tg, it)
	st, err = tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st[it.ID()]; got.Snapshotted || !got.Applied.IsZero() {
		t.Fatalf("state after reset: %+v, want none", got)
	}
	want(t, h, tg, it)
	// An empty table's snapshot: only the marker.
	other := Items()
	other.Name = "empty"
	reset(t, tg, other)
	apply(t, tg, &change.Batch{Snapshotted: []change.SnapshotDone{{Table: other, Pos: snap}}})
	if st, err = tg.State(ctx); err != nil || !st[other.ID()].Snapshotted {
		t.Fatalf("empty table snapshot state: %+v, %v", st[other.ID()], err)
	}
}

func testSchemaChange(t *testing.T, h Harness) {
	tg := h.Open(t)
	v1 := Items()
	reset(t, tg, v1)
	apply(t, tg, batch(Ins(v1, 1, 1, "a", 1)))

	// ADD COLUMN mid-batch: rows before it are merged with the old shape.
	v2 := Items()
	v2.Version = 2
	v2.Columns = append(v2.Columns, change.Column{Name: "extra", Type: change.Type{Name: "character varying(10)", Kind: change.KindText}, Nullable: true})
	apply(t, tg, batch(
		Ins(v1, 2, 2, "b", 2),
		Ins(v1, 3, 10, "ten", 10),
		Ins(v2, 3, 3, "c", 3, "x3"),
		Upd(v2, 4, nil, 1, "a", 1, "x1"),
		Upd(v2, 4, nil, 10, "ten", 11, "x10"), // the same key in both segments
	))
	want(t, h, tg, v2, "1|a|1|x1", "10|ten|11|x10", "2|b|2|~", "3|c|3|x3")
	del := Del(v2, 4, 10)
	del.Pos.CommitLSN += 5 // between Pos(4) and Pos(5)
	apply(t, tg, batch(del))

	// DROP COLUMN in a later batch, with a schema built anew (as a stream
	// reader decodes it: another pointer, same shape as v3).
	v3 := &change.Table{Schema: "public", Name: "items", Version: 3, Key: []int{0}, Columns: []change.Column{
		v2.Columns[0], v2.Columns[1], v2.Columns[3],
	}}
	apply(t, tg, batch(Ins(v3, 5, 5, "e", "x5")))
	v3b := *v3
	apply(t, tg, batch(Upd(&v3b, 6, nil, 2, "b", "x2")))
	want(t, h, tg, v3, "1|a|x1", "2|b|x2", "3|c|x3", "5|e|x5")

	// A column's type change: bigint n is back, as text this time.
	v4 := &change.Table{Schema: "public", Name: "items", Version: 4, Key: []int{0}, Columns: append(slices.Clone(v3.Columns),
		change.Column{Name: "n", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true})}
	apply(t, tg, batch(Ins(v4, 7, 7, "g", "x7", "seven")))
	want(t, h, tg, v4, "1|a|x1|~", "2|b|x2|~", "3|c|x3|~", "5|e|x5|~", "7|g|x7|seven")

	// A column added with a default at the source: rows that predate it
	// hold the default there (Column.Missing) and send no change.
	dflt := change.V(change.KindInt, "42")
	v4b := &change.Table{Schema: "public", Name: "items", Version: 5, Key: []int{0}, Columns: append(slices.Clone(v4.Columns),
		change.Column{Name: "answer", Type: change.Type{Name: "integer", Kind: change.KindInt}, Nullable: true, Missing: &dflt})}
	apply(t, tg, batch(Upd(v4, 8, nil, 5, "e", "x5", "five"), Ins(v4b, 9, 9, "i", "x9", "nine", 9)))
	want(t, h, tg, v4b, "1|a|x1|~|42", "2|b|x2|~|42", "3|c|x3|~|42", "5|e|x5|five|42", "7|g|x7|seven|42", "9|i|x9|nine|9")
	v4 = v4b

	// A changed key cannot be altered in place: a clear error, nothing applied.
	v5 := &change.Table{Schema: "public", Name: "items", Version: 5, Key: []int{1}, Columns: slices.Clone(v4.Columns)}
	v5.Columns[0].Key, v5.Columns[1].Key = false, true
	err := tg.Apply(context.Background(), batch(Ins(v5, 10, 8, "h", "x8", "eight", 8)))
	if err == nil || !strings.Contains(err.Error(), "primary key") || !strings.Contains(err.Error(), "resnapshot") {
		t.Fatalf("key change: got %v, want an error naming the primary key and the fix", err)
	}
	want(t, h, tg, v4, "1|a|x1|~|42", "2|b|x2|~|42", "3|c|x3|~|42", "5|e|x5|five|42", "7|g|x7|seven|42", "9|i|x9|nine|9")
}

// testRandom applies random operations over a small key space in batches
// of random sizes, redelivering random earlier stretches, and compares the
// table with a model after every batch.
func testRandom(t *testing.T, h Harness) {
	tg := h.Open(t)
	it := Items()
	reset(t, tg, it)
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[int][2]string{}
	var history []change.Change
	i := 0
	for len(history) < 600 {
		n := 1 + rng.IntN(40)
		start := len(history)
		for j := 0; j < n; j++ {
			i++
			k := rng.IntN(12)
			v := fmt.Sprintf("v%d", i)
			cur, exists := model[k]
			switch r := rng.IntN(100); {
			case r < 2:
				history = append(history, Trunc(it, i))
				clear(model)
			case !exists:
				history = append(history, Ins(it, i, k, v, i))
				model[k] = [2]string{v, strconv.Itoa(i)}
			case r < 30:
				history = append(history, Del(it, i, k))
				delete(model, k)
			case r < 45:
				// Move the row to a free key.
				nk := 12 + rng.IntN(12)
				if _, taken := model[nk]; taken {
					history = append(history, Upd(it, i, nil, k, v, i))
					model[k] = [2]string{v, strconv.Itoa(i)}
					break
				}
				history = append(history, Upd(it, i, []any{k, cur[0], 0}, nk, cur[0], i))
				delete(model, k)
				model[nk] = [2]string{cur[0], strconv.Itoa(i)}
			case r < 60:
				history = append(history, Upd(it, i, nil, k, change.Unchanged, i))
				model[k] = [2]string{cur[0], strconv.Itoa(i)}
			default:
				history = append(history, Upd(it, i, nil, k, v, i))
				model[k] = [2]string{v, strconv.Itoa(i)}
			}
		}
		b := slices.Clone(history[start:])
		if start > 0 && rng.IntN(3) == 0 {
			// Redeliver an earlier stretch before (and with) the new changes.
			from := rng.IntN(start)
			b = append(slices.Clone(history[from:start]), b...)
		}
		apply(t, tg, batch(b...))
		if rng.IntN(4) == 0 {
			apply(t, tg, batch(b...))
		}
		var exp []string
		for k, v := range model {
			exp = append(exp, fmt.Sprintf("%d|%s|%s", k, v[0], v[1]))
		}
		want(t, h, tg, it, exp...)
	}
}

// applyStream applies b with marks, as a stream reader's batch carries them.
func applyStream(ctx context.Context, tg Target, b *change.Batch, marks []warehouse.StreamMark) error {
	b.Marks = marks
	return tg.ApplyStream(ctx, b)
}

func testStream(t *testing.T, h Harness) {
	ctx := context.Background()
	tg := h.Open(t)
	// No Reset: the stream reader has none. Each change has its own
	// *Table, as decoded records do.
	mk := func() *change.Table { return Items() }
	b := batch(Ins(mk(), 4, 1, "a", 1), Ins(mk(), 3, 2, "b", 2), Upd(mk(), 2, nil, 1, "a-older", 0))
	marks := []warehouse.StreamMark{{Stream: "s", Shard: "shard-0", Sequence: "100"}, {Stream: "s", Shard: "shard-1", Sequence: "7"}}
	if err := applyStream(ctx, tg, b, marks); err != nil {
		t.Fatalf("apply stream: %v", err)
	}
	want(t, h, tg, Items(), "1|a|1", "2|b|2")
	// The same records again (a reader that lost its checkpoint): keys
	// inserted before are merged, not duplicated.
	if err := applyStream(ctx, tg, b, marks); err != nil {
		t.Fatalf("apply stream again: %v", err)
	}
	want(t, h, tg, Items(), "1|a|1", "2|b|2")
	got, err := tg.StreamMarks(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, map[string]string{"shard-0": "100", "shard-1": "7"}) {
		t.Fatalf("marks: %v", got)
	}
	// Stream mode does not filter by table position: a shard behind the
	// others still lands (here an older position of another key).
	if err := applyStream(ctx, tg, batch(Ins(mk(), 0, 5, "from-slow-shard", 5)), []warehouse.StreamMark{{Stream: "s", Shard: "shard-1", Sequence: "8"}}); err != nil {
		t.Fatal(err)
	}
	want(t, h, tg, Items(), "1|a|1", "2|b|2", "5|from-slow-shard|5")
	// A failing batch (a value the target cannot hold) stores neither data
	// nor marks.
	bad := mk()
	bad.Name = "other"
	err = applyStream(ctx, tg, batch(Ins(mk(), 9, 9, "i", 9), Ins(bad, 9, 1, "x", "not a number")), []warehouse.StreamMark{{Stream: "s", Shard: "shard-0", Sequence: "200"}})
	if err == nil {
		t.Fatal("batch with a value the target cannot hold: no error")
	}
	got, _ = tg.StreamMarks(ctx, "s")
	if got["shard-0"] != "100" || got["shard-1"] != "8" {
		t.Fatalf("marks moved by a failed batch: %v", got)
	}
	want(t, h, tg, Items(), "1|a|1", "2|b|2", "5|from-slow-shard|5")
	if m, err := tg.StreamMarks(ctx, "other"); err != nil || len(m) != 0 {
		t.Fatalf("marks of an unknown stream: %v, %v", m, err)
	}
	// A fenced mark: applied while the stored one is below the batch's
	// first record (or absent); refused, with nothing applied, once
	// another reader stored one at or past it.
	fenced := func(shard, seq, below string) []warehouse.StreamMark {
		return []warehouse.StreamMark{{Stream: "s", Shard: shard, Sequence: seq, Below: below}}
	}
	if err := applyStream(ctx, tg, batch(Ins(mk(), 10, 6, "f", 6)), fenced("shard-0", "150", "101")); err != nil {
		t.Fatalf("a fenced mark past the stored one: %v", err)
	}
	if err := applyStream(ctx, tg, batch(Ins(mk(), 11, 7, "g", 7)), fenced("shard-9", "3", "1")); err != nil {
		t.Fatalf("a fenced mark of a shard without one: %v", err)
	}
	err = applyStream(ctx, tg, batch(Ins(mk(), 12, 8, "late", 8)), fenced("shard-0", "140", "120"))
	var fe *warehouse.FenceError
	if !errors.As(err, &fe) || fe.Shard != "shard-0" || fe.Stored != "150" || fe.Below != "120" {
		t.Fatalf("a fenced mark behind the stored one: %T %v", err, err)
	}
	if !errors.Is(err, pipeline.ErrFenced) {
		t.Fatalf("the refusal %v is no pipeline.ErrFenced: the pipeline would retry it forever", err)
	}
	got, _ = tg.StreamMarks(ctx, "s")
	if got["shard-0"] != "150" {
		t.Fatalf("a refused batch moved the mark: %v", got)
	}
	want(t, h, tg, Items(), "1|a|1", "2|b|2", "5|from-slow-shard|5", "6|f|6", "7|g|7")
}

func testChecksums(t *testing.T, h Harness) {
	ctx := context.Background()
	a, b := h.Open(t), h.Open(t)
	it := Items()
	var cs []change.Change
	for i := 0; i < 200; i++ {
		cs = append(cs, Ins(it, i+1, i, fmt.Sprintf("value %d", i), i*i))
	}
	for _, tg := range []Target{a, b} {
		reset(t, tg, it)
		apply(t, tg, batch(cs...))
	}
	ba, err := a.Checksums(ctx, it, 16)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.Checksums(ctx, it, 16)
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	for _, x := range ba {
		rows += x.Rows
	}
	if rows != 200 || len(ba) != 16 {
		t.Fatalf("checksums cover %d rows in %d buckets, want 200 in 16", rows, len(ba))
	}
	if d := warehouse.DiffBuckets(ba, bb); d != nil {
		t.Fatalf("same data, buckets differ: %v", d)
	}
	apply(t, b, batch(Upd(it, 500, nil, 77, "value 77", 0)))
	bb, err = b.Checksums(ctx, it, 16)
	if err != nil {
		t.Fatal(err)
	}
	d := warehouse.DiffBuckets(ba, bb)
	if len(d) != 1 {
		t.Fatalf("one changed row: buckets differ %v, want exactly one", d)
	}
	ka, err := a.BucketKeys(ctx, it, 16, d[0], 1000)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.BucketKeys(ctx, it, 16, d[0], 1000)
	if err != nil {
		t.Fatal(err)
	}
	rd := warehouse.DiffRows(ka, kb)
	if len(rd) != 1 || !reflect.DeepEqual(rd[0].Key, []string{"77"}) {
		t.Fatalf("row diff: %+v, want key 77", rd)
	}
}

func testMultiset(t *testing.T, h Harness) {
	ctx := context.Background()
	tg := h.Open(t)
	ev := Events()
	reset(t, tg, ev)
	b1 := batch(
		Ins(ev, 1, 1, "x", nil), Ins(ev, 2, 1, "x", nil), Ins(ev, 3, 1, "x", nil),
		Ins(ev, 4, nil, nil, nil), Ins(ev, 5, nil, nil, nil),
		Ins(ev, 6, 2, "y", 5),
	)
	apply(t, tg, b1)
	want(t, h, tg, ev, "1|x|~", "1|x|~", "1|x|~", "~|~|~", "~|~|~", "2|y|5")
	// A delete removes exactly one equal row, NULLs compared as values; an
	// update replaces exactly one.
	b2 := batch(
		Del(ev, 7, 1, "x", nil),
		Upd(ev, 8, []any{1, "x", nil}, 1, "x2", nil),
		Del(ev, 9, nil, nil, nil),
	)
	apply(t, tg, b2)
	exp := []string{"1|x|~", "1|x2|~", "~|~|~", "2|y|5"}
	want(t, h, tg, ev, exp...)
	// Replays change nothing, whole or in part.
	apply(t, tg, b2)
	apply(t, tg, b1)
	apply(t, tg, batch(append(slices.Clone(b1.Changes), b2.Changes...)...))
	want(t, h, tg, ev, exp...)
	// Inserted then deleted in one batch: nothing; deleted and inserted
	// again: unchanged; an update that changed nothing: unchanged.
	apply(t, tg, batch(
		Ins(ev, 10, 3, "z", 3), Del(ev, 11, 3, "z", 3),
		Del(ev, 12, 2, "y", 5), Ins(ev, 13, 2, "y", 5),
		Upd(ev, 14, []any{1, "x2", nil}, 1, "x2", nil),
	))
	want(t, h, tg, ev, exp...)
	// The last of several identical rows goes; a truncate mid-batch keeps
	// only what follows it.
	apply(t, tg, batch(Del(ev, 15, 1, "x", nil)))
	want(t, h, tg, ev, "1|x2|~", "~|~|~", "2|y|5")
	apply(t, tg, batch(Ins(ev, 16, 9, "gone", 9), Trunc(ev, 17), Ins(ev, 18, 4, "w", nil), Ins(ev, 19, 4, "w", nil)))
	want(t, h, tg, ev, "4|w|~", "4|w|~")
	// Checksums count duplicates.
	two, err := tg.Checksums(ctx, ev, 4)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, tg, batch(Del(ev, 20, 4, "w", nil)))
	one, err := tg.Checksums(ctx, ev, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(warehouse.DiffBuckets(one, two)) == 0 {
		t.Fatal("checksums of {r, r} and {r} are equal")
	}
	st, err := tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[ev.ID()].Applied != Pos(20) {
		t.Fatalf("state: %+v, want applied %v", st[ev.ID()], Pos(20))
	}
	// A snapshot of identical rows keeps every one of them.
	reset(t, tg, ev)
	snap := Pos(30)
	apply(t, tg, &change.Batch{Changes: []change.Change{Read(ev, snap, 1, nil, nil), Read(ev, snap, 1, nil, nil)},
		Snapshotted: []change.SnapshotDone{{Table: ev, Pos: snap}}})
	apply(t, tg, batch(Ins(ev, 29, 1, nil, nil), Del(ev, 31, 1, nil, nil)))
	want(t, h, tg, ev, "1|~|~")
}

// testMultisetRandom runs random histories of identical and NULL-holding
// rows through a keyless table, with redeliveries, against a model.
func testMultisetRandom(t *testing.T, h Harness) {
	tg := h.Open(t)
	ev := Events()
	reset(t, tg, ev)
	rng := rand.New(rand.NewPCG(3, 4))
	vals := func() []any {
		pick := func(v any) any {
			if rng.IntN(3) == 0 {
				return nil
			}
			return v
		}
		return []any{pick(rng.IntN(3)), pick([]string{"p", "q"}[rng.IntN(2)]), pick(7)}
	}
	text := func(v []any) string {
		parts := make([]string, len(v))
		for i, x := range v {
			if x == nil {
				parts[i] = "~"
			} else {
				parts[i] = fmt.Sprint(x)
			}
		}
		return strings.Join(parts, "|")
	}
	var model [][]any
	var history []change.Change
	i := 0
	for len(history) < 500 {
		n := 1 + rng.IntN(30)
		start := len(history)
		for range n {
			i++
			switch r := rng.IntN(100); {
			case r < 2:
				history = append(history, Trunc(ev, i))
				model = nil
			case len(model) == 0 || r < 50:
				v := vals()
				history = append(history, Ins(ev, i, v...))
				model = append(model, v)
			case r < 75:
				j := rng.IntN(len(model))
				history = append(history, Del(ev, i, model[j]...))
				model = slices.Delete(model, j, j+1)
			default:
				j := rng.IntN(len(model))
				v := vals()
				history = append(history, Upd(ev, i, model[j], v...))
				model[j] = v
			}
		}
		b := slices.Clone(history[start:])
		if start > 0 && rng.IntN(3) == 0 {
			b = append(slices.Clone(history[rng.IntN(start):start]), b...)
		}
		apply(t, tg, batch(b...))
		var exp []string
		for _, v := range model {
			exp = append(exp, text(v))
		}
		want(t, h, tg, ev, exp...)
	}
}

// testMultisetStream applies keyless rows in stream mode: no position
// filter, the shards' marks catch replays; a truncate is still a floor.
func testMultisetStream(t *testing.T, h Harness) {
	ctx := context.Background()
	tg := h.Open(t)
	mk := func() *change.Table { return Events() }
	marks := func(seq string) []warehouse.StreamMark {
		return []warehouse.StreamMark{{Stream: "s", Shard: "shard-0", Sequence: seq}}
	}
	if err := applyStream(ctx, tg, batch(Ins(mk(), 5, 1, "a", nil), Ins(mk(), 3, 1, "a", nil), Ins(mk(), 4, nil, nil, nil)), marks("1")); err != nil {
		t.Fatal(err)
	}
	want(t, h, Target(tg), Events(), "1|a|~", "1|a|~", "~|~|~")
	if err := applyStream(ctx, tg, batch(Upd(mk(), 6, []any{1, "a", nil}, 1, "b", nil), Del(mk(), 7, nil, nil, nil)), marks("2")); err != nil {
		t.Fatal(err)
	}
	want(t, h, tg, Events(), "1|a|~", "1|b|~")
	// A lagging shard's row from before a truncate does not come back.
	if err := applyStream(ctx, tg, batch(Trunc(mk(), 10), Ins(mk(), 11, 2, "c", 2), Ins(mk(), 9, 1, "late", nil)), marks("3")); err != nil {
		t.Fatal(err)
	}
	want(t, h, tg, Events(), "2|c|2")
}

// testJSONNull: a json value that is the JSON literal null lands as JSON
// null, not as SQL NULL, and the checksums tell the two apart.
func testJSONNull(t *testing.T, h Harness) {
	ctx := context.Background()
	tg := h.Open(t)
	docs := &change.Table{Schema: "public", Name: "docs", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "j", Type: change.Type{Name: "jsonb", Kind: change.KindJSON}, Nullable: true},
		{Name: "k", Type: change.Type{Name: "json", Kind: change.KindJSON}, Nullable: true},
	}}
	reset(t, tg, docs)
	jn := change.V(change.KindJSON, "null")
	apply(t, tg, batch(Ins(docs, 1, 1, jn, nil), Ins(docs, 2, 2, nil, jn), Ins(docs, 3, 3, nil, nil)))
	want(t, h, tg, docs, "1|null|~", "2|~|null", "3|~|~")
	a, err := tg.Checksums(ctx, docs, 1)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, tg, batch(Upd(docs, 4, nil, 1, nil, nil)))
	b, err := tg.Checksums(ctx, docs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(warehouse.DiffBuckets(a, b)) == 0 {
		t.Error("checksums do not tell JSON null from SQL NULL")
	}
}
