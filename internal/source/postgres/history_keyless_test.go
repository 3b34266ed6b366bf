package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// replayMultiset replays a keyless table's changes the way a target does:
// sorted by position, snapshot rows first, streamed changes at or before
// the snapshot's position skipped; rows counted by their whole value.
func replayMultiset(changes []change.Change, snapPos change.Position) map[string]int {
	sorted := append([]change.Change(nil), changes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Pos.Less(sorted[j].Pos) })
	rows := map[string]int{}
	for _, c := range sorted {
		if c.Op != change.OpRead && !snapPos.Less(c.Pos) {
			continue
		}
		switch c.Op {
		case change.OpTruncate:
			clear(rows)
			continue
		case change.OpDelete, change.OpUpdate:
			k := rowKey(c.Before)
			if rows[k]--; rows[k] == 0 {
				delete(rows, k)
			}
		}
		if c.Op != change.OpDelete {
			rows[rowKey(c.After)]++
		}
	}
	return rows
}

func multisetContents(t *testing.T, url string) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id::text, v, n::text FROM hk")
	must(t, err)
	out := map[string]int{}
	for rows.Next() {
		var id, v, n *string
		must(t, rows.Scan(&id, &v, &n))
		vals := make([]change.Value, 3)
		for i, s := range []*string{id, v, n} {
			if s != nil {
				vals[i] = change.V(change.KindText, *s)
			}
		}
		out[rowKey(vals)]++
	}
	must(t, rows.Err())
	return out
}

// keylessWorkload runs random transactions on the keyless table hk from
// several connections: identical rows, NULLs, exactly one of several equal
// rows deleted or updated (by ctid), bulk inserts, truncates.
func keylessWorkload(t *testing.T, url string, workers, txns int, seed uint64) {
	t.Helper()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			one := func(where string) string {
				return "ctid = (SELECT ctid FROM hk WHERE " + where + " LIMIT 1)"
			}
			for i := 0; i < txns; i++ {
				id := r.IntN(5)
				var q string
				switch p := r.IntN(100); {
				case p < 35:
					q = fmt.Sprintf("INSERT INTO hk VALUES (%d, 'v%d', NULL)", id, id%2)
				case p < 45:
					q = "INSERT INTO hk VALUES (NULL, NULL, NULL)"
				case p < 60:
					q = "DELETE FROM hk WHERE " + one(fmt.Sprintf("id = %d", id))
				case p < 65:
					q = "DELETE FROM hk WHERE " + one("id IS NULL")
				case p < 80:
					q = fmt.Sprintf("UPDATE hk SET n = coalesce(n, 0) + 1 WHERE %s", one(fmt.Sprintf("id = %d", id)))
				case p < 88:
					q = fmt.Sprintf("UPDATE hk SET v = NULL, id = %d WHERE %s", r.IntN(5), one("v IS NOT NULL"))
				case p < 97:
					q = fmt.Sprintf("INSERT INTO hk SELECT g %% 3, 'bulk', NULL FROM generate_series(1, %d) g", 20+r.IntN(200))
				case p < 98 && w == 0 && i > txns*3/4:
					q = "TRUNCATE hk"
				default:
					q = "UPDATE hk SET n = 0 WHERE id = 1"
				}
				if _, err := conn.Exec(ctx, q); err != nil && ctx.Err() == nil {
					// Deadlocks between the workers' single-row statements
					// roll the statement back: go on, as TestHistory does.
					continue
				}
			}
		}()
	}
	wg.Wait()
}

// TestHistoryKeyless: the random history test on a keyless table (REPLICA
// IDENTITY FULL, no key): replaying what the snapshot and the stream
// emitted, as row counts, reproduces the table's multiset exactly.
func TestHistoryKeyless(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), `CREATE TABLE hk (id int, v text, n int);
ALTER TABLE hk REPLICA IDENTITY FULL;
INSERT INTO hk SELECT g % 4, 'seed', NULL FROM generate_series(1, 300) g;`)
	s := newSource(t, url, func(c *Config) { c.BatchChanges = 500; c.ChunkRows = 50; c.SnapshotWorkers = 3 }, "hk")
	tables, err := s.Prepare(ctx)
	must(t, err)
	if !tables[0].Keyless() {
		t.Fatalf("hk has key %v, want none", tables[0].KeyNames())
	}
	var str collector
	stop := startStream(t, s, str.emit)
	done := make(chan struct{})
	go func() { keylessWorkload(t, url, 3, 300, 1); close(done) }()
	time.Sleep(5 * time.Millisecond)
	var snap collector
	must(t, s.Snapshot(ctx, tables, snap.emit))
	<-done
	end := currentLSN(t, url)
	waitFor(t, "stream to catch up", 60*time.Second, func() bool { return str.lastAck() >= end })
	must(t, stop())
	pos := snap.batches[len(snap.batches)-1].Snapshotted[0].Pos
	all := append(append([]change.Change(nil), snap.changes...), str.changes...)
	got, want := replayMultiset(all, pos), multisetContents(t, url)
	t.Logf("snapshot %d rows at %s, streamed %d changes, %d rows in %d distinct values", len(snap.changes), pos, len(str.changes), total(want), len(want))
	for k, n := range want {
		if got[k] != n {
			t.Errorf("row %s: replica %d, source %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("row %s: replica %d, source 0", k, n)
		}
	}
}

func total(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}
