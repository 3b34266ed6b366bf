package kinesis

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/postgres"
)

// mixedChanges makes inserts, updates and deletes over keys 1..keys, and
// returns the rows that should remain (id -> val).
func mixedChanges(n, keys int, seed uint64) ([]change.Change, map[string]string) {
	rng := rand.New(rand.NewPCG(seed, seed))
	live := map[string]string{}
	out := make([]change.Change, 0, n)
	for i := 0; len(out) < n; i++ {
		id := strconv.Itoa(rng.IntN(keys) + 1)
		pos := change.Position{CommitLSN: change.LSN(10_000 + i), LSN: change.LSN(10_000 + i)}
		c := change.Change{Table: itemsTable, Pos: pos, TxID: uint32(i), CommitTime: time.Unix(1_700_000_000, 0)}
		val := "v" + strconv.Itoa(i)
		_, exists := live[id]
		switch {
		case !exists:
			c.Op = change.OpInsert
			c.After = []change.Value{change.V(change.KindInt, id), change.V(change.KindText, val)}
			live[id] = val
		case rng.IntN(4) == 0:
			c.Op = change.OpDelete
			c.Before = []change.Value{change.V(change.KindInt, id), change.Null}
			delete(live, id)
		default:
			c.Op = change.OpUpdate
			c.After = []change.Value{change.V(change.KindInt, id), change.V(change.KindText, val)}
			live[id] = val
		}
		out = append(out, c)
	}
	return out, live
}

// End to end through real parts: the sink puts inserts, updates and deletes
// through injected throttling and partial failures (so the stream holds
// duplicates), the reader applies them into the Postgres warehouse target,
// and the target converges to exactly the source's last state.
func TestSinkToReaderIntoPostgresTargetConverges(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "e2e", 3); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, k)
	rng := rand.New(rand.NewPCG(3, 4))
	p.decide = func(n int, pks []string) (string, []string) {
		if n%5 == 2 {
			return "ProvisionedThroughputExceededException", nil
		}
		per := make([]string, len(pks))
		for i := range per {
			if rng.IntN(10) == 0 {
				per[i] = "ProvisionedThroughputExceededException"
			}
		}
		return "", per
	}
	sink := newTestSink(t, proxiedConnection(k, p, "e2e"), func(c *SinkConfig) { c.Concurrency = 3 })
	all, want := mixedChanges(1500, 60, 9)
	for i := 0; i < len(all); i += 250 {
		if err := sink.Apply(ctx, &change.Batch{Changes: all[i : i+250]}); err != nil {
			t.Fatal(err)
		}
	}
	onStream := len(readStream(t, k.Client(), "e2e"))
	if onStream <= len(all) {
		t.Fatalf("stream holds %d records for %d changes: the faults made no duplicates, the test proves less", onStream, len(all))
	}

	url := testDB(t)
	target, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	r := newTestReader(t, directConnection(k, "e2e"), target, nil)
	stop := runReader(t, r, warehouse.StreamTarget{StreamWarehouse: target})
	waitFor(t, "every record read and applied", func() bool {
		st := r.Stats()
		return st.Read == int64(onStream) && st.Applied == int64(onStream)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id::text, val FROM public.items`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var id, val string
		if err := rows.Scan(&id, &val); err != nil {
			t.Fatal(err)
		}
		got[id] = val
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != len(want) {
		t.Fatalf("target holds %d rows, source %d", len(got), len(want))
	}
	for id, val := range want {
		if got[id] != val {
			t.Fatalf("row %s = %q in the target, %q in the source", id, got[id], val)
		}
	}
	t.Logf("%d changes, %d records on the stream, %d rows converged", len(all), onStream, len(want))
}
