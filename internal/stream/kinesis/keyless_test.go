package kinesis

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/postgres"
)

var eventsTable = &change.Table{Schema: "public", Name: "events", Version: 1, Columns: []change.Column{
	{Name: "kind", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	{Name: "n", Type: change.Type{Name: "integer", Kind: change.KindInt}, Nullable: true},
}}

// keylessChanges makes inserts (many identical, some all NULL), deletes
// and updates of one row among equals, and returns the multiset left.
func keylessChanges(n int, seed uint64) ([]change.Change, map[string]int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	var live [][]change.Value
	out := make([]change.Change, 0, n)
	val := func() []change.Value {
		kinds := []change.Value{change.Null, change.V(change.KindText, "click"), change.V(change.KindText, "view")}
		nums := []change.Value{change.Null, change.V(change.KindInt, "1"), change.V(change.KindInt, "2")}
		return []change.Value{kinds[rng.IntN(3)], nums[rng.IntN(3)]}
	}
	for i := 0; len(out) < n; i++ {
		pos := change.Position{CommitLSN: change.LSN(10_000 + i), LSN: change.LSN(10_000 + i)}
		c := change.Change{Table: eventsTable, Pos: pos, TxID: uint32(i), CommitTime: time.Unix(1_700_000_000, 0)}
		switch r := rng.IntN(10); {
		case len(live) == 0 || r < 5:
			c.Op, c.After = change.OpInsert, val()
			live = append(live, c.After)
		case r < 8:
			j := rng.IntN(len(live))
			c.Op, c.Before = change.OpDelete, live[j]
			live = slices.Delete(live, j, j+1)
		default:
			j := rng.IntN(len(live))
			c.Op, c.Before, c.After = change.OpUpdate, live[j], val()
			live[j] = c.After
		}
		out = append(out, c)
	}
	want := map[string]int{}
	for _, r := range live {
		want[r[0].String()+"|"+r[1].String()]++
	}
	return out, want
}

// A keyless table through Kinesis into the Postgres target: the sink puts
// every change of equal rows on one shard (an update as a delete of the old
// row and an insert of the new), the reader applies them as row counts and
// is stopped and started again mid-stream; the target holds exactly the
// source's multiset.
func TestKeylessThroughKinesis(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "keyless", 3); err != nil {
		t.Fatal(err)
	}
	sink := newTestSink(t, directConnection(k, "keyless"), func(c *SinkConfig) { c.Concurrency = 3 })
	all, want := keylessChanges(1200, 5)
	url := testDB(t)
	target, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	for i := 0; i < len(all); i += 200 {
		if err := sink.Apply(ctx, &change.Batch{Changes: all[i : i+200]}); err != nil {
			t.Fatal(err)
		}
		if i == 600 {
			// A reader that stops mid-stream: the next one starts from the
			// checkpoints stored with the data.
			r := newTestReader(t, directConnection(k, "keyless"), target, nil)
			stop := runReader(t, r, warehouse.StreamTarget{StreamWarehouse: target})
			waitFor(t, "some records applied", func() bool { return r.Stats().Applied > 0 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	onStream := int64(len(readStream(t, k.Client(), "keyless")))
	r := newTestReader(t, directConnection(k, "keyless"), target, nil)
	stop := runReader(t, r, warehouse.StreamTarget{StreamWarehouse: target})
	got := map[string]int{}
	waitFor(t, "the target to hold the source's rows", func() bool {
		clear(got)
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT coalesce(kind, 'NULL') || '|' || coalesce(n::text, 'NULL') FROM public.events`)
		if err != nil {
			return false // not created yet
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range texts {
			got[s]++
		}
		return mapsEqual(got, want) && r.Stats().Read > 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range want {
		n += c
	}
	t.Logf("%d keyless changes, %d records on the stream, %d rows in %d distinct values", len(all), onStream, n, len(want))
	if onStream <= int64(len(all)) {
		t.Errorf("%d records for %d changes: updates should travel as a delete and an insert", onStream, len(all))
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
