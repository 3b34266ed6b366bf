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

// replay replays changes into memory the way a target does: sorted by
// position, snapshot rows first, streamed changes at or before the
// snapshot's position skipped.
func replay(changes []change.Change, snapPos change.Position) map[string]string {
	sorted := append([]change.Change(nil), changes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Pos.Less(sorted[j].Pos) })
	rows := map[string][]change.Value{}
	for _, c := range sorted {
		if c.Op != change.OpRead && !snapPos.Less(c.Pos) {
			continue
		}
		switch c.Op {
		case change.OpRead, change.OpInsert:
			rows[rowKey(c.Key())] = c.After
		case change.OpUpdate:
			if old := c.OldKey(); old != nil {
				delete(rows, rowKey(old))
			}
			after := append([]change.Value(nil), c.After...)
			if prev, ok := rows[rowKey(c.Key())]; ok {
				for i, v := range after {
					if v.Kind == change.KindUnchanged {
						after[i] = prev[i]
					}
				}
			}
			rows[rowKey(c.Key())] = after
		case change.OpDelete:
			delete(rows, rowKey(c.Key()))
		case change.OpTruncate:
			clear(rows)
		}
	}
	out := map[string]string{}
	for k, r := range rows {
		out[k] = rowKey(r)
	}
	return out
}

func tableContents(t *testing.T, url string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id::text, coalesce(v, 'NULL'), coalesce(n::text, 'NULL') FROM h")
	must(t, err)
	out := map[string]string{}
	for rows.Next() {
		var id, v, n string
		must(t, rows.Scan(&id, &v, &n))
		out[id] = id + "|" + v + "|" + n
	}
	must(t, rows.Err())
	return out
}

var badKeys []string

func diff(t *testing.T, got, want map[string]string) bool {
	t.Helper()
	badKeys = nil
	bad := 0
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			if bad < 10 {
				t.Errorf("key %s: replica %q, source %q", k, got[k], want[k])
				badKeys = append(badKeys, k)
			}
			bad++
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			if bad < 10 {
				t.Errorf("key %s: replica has %q, source has no row", k, got[k])
				badKeys = append(badKeys, k)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d rows differ (replica %d rows, source %d rows)", bad, len(got), len(want))
		return false
	}
	return true
}

// workload runs random transactions from several connections at once:
// inserts, updates (also of the key), deletes, delete and re-insert of one
// key in one transaction, truncates, tiny and large transactions.
func workload(t *testing.T, url string, workers, txns int, seed uint64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; i < txns; i++ {
				tx, err := conn.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				var stmts []string
				id := r.IntN(400) + 1
				switch p := r.IntN(100); {
				case p < 30:
					stmts = append(stmts, fmt.Sprintf("INSERT INTO h VALUES (%d, 'v%d', %d) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = excluded.n", id, i, r.IntN(1000)))
				case p < 50:
					stmts = append(stmts, fmt.Sprintf("UPDATE h SET v = 'u%d-%d', n = n + 1 WHERE id = %d", w, i, id))
				case p < 58:
					stmts = append(stmts, fmt.Sprintf("UPDATE h SET id = %d WHERE id = %d", r.IntN(400)+1, id))
				case p < 70:
					stmts = append(stmts, fmt.Sprintf("DELETE FROM h WHERE id = %d", id))
				case p < 80:
					stmts = append(stmts, fmt.Sprintf("DELETE FROM h WHERE id = %d", id),
						fmt.Sprintf("INSERT INTO h VALUES (%d, 're%d', NULL)", id, i))
				case p < 88:
					for k := 0; k < 5; k++ {
						stmts = append(stmts, fmt.Sprintf("UPDATE h SET n = coalesce(n, 0) + %d WHERE id = %d", k, r.IntN(400)+1))
					}
				case p < 96:
					stmts = append(stmts, fmt.Sprintf("INSERT INTO h SELECT g, 'bulk', g FROM generate_series(%d, %d) g ON CONFLICT (id) DO UPDATE SET v = 'bulk2'", 1000+r.IntN(500), 2000+r.IntN(1500)))
				case p < 98 && w == 0 && i > txns/3:
					stmts = append(stmts, "TRUNCATE h")
				default:
					stmts = append(stmts, "UPDATE h SET n = 0 WHERE id % 7 = 0")
				}
				ok := true
				for _, q := range stmts {
					if _, err := tx.Exec(ctx, q); err != nil {
						ok = false // unique violations and deadlocks: roll back, go on
						break
					}
				}
				if ok {
					_ = tx.Commit(ctx)
				} else {
					_ = tx.Rollback(ctx)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

const historySetup = `CREATE TABLE h (id int PRIMARY KEY, v text, n int);
INSERT INTO h SELECT g, 'seed', g FROM generate_series(1, 300) g;`

// TestHistory: a random concurrent workload runs while the snapshot and the
// stream read; replaying what was emitted reproduces the table exactly.
func TestHistory(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), historySetup)
	s := newSource(t, url, func(c *Config) { c.BatchChanges = 500; c.ChunkRows = 50; c.SnapshotWorkers = 3 }, "h")
	tables, err := s.Prepare(ctx)
	must(t, err)

	var str collector
	stop := startStream(t, s, str.emit)
	done := make(chan struct{})
	go func() { workload(t, url, 3, 150, 1); close(done) }()
	time.Sleep(50 * time.Millisecond)
	var snap collector
	must(t, s.Snapshot(ctx, tables, snap.emit))
	<-done
	end := currentLSN(t, url)
	waitFor(t, "stream to catch up", 60*time.Second, func() bool { return str.lastAck() >= end })
	must(t, stop())
	if str.maxLen > 500 {
		t.Errorf("batch of %d changes, limit 500", str.maxLen)
	}
	pos := snap.batches[len(snap.batches)-1].Snapshotted[0].Pos
	all := append(append([]change.Change(nil), snap.changes...), str.changes...)
	t.Logf("snapshot %d rows at %s, streamed %d changes", len(snap.changes), pos, len(str.changes))
	if !diff(t, replay(all, pos), tableContents(t, url)) {
		explain(t, all, pos)
	}
}

// explain logs the history of the first differing keys.
func explain(t *testing.T, all []change.Change, pos change.Position) {
	t.Logf("snapshot position %s", pos)
	for _, k := range badKeys {
		for _, c := range all {
			if rowKey(c.Key()) == k || rowKey(c.OldKey()) == k || c.Op == change.OpTruncate {
				t.Logf("key %s: %v at %s tx %d before %v after %v", k, c.Op, c.Pos, c.TxID, c.Before, c.After)
			}
		}
	}
	t.FailNow()
}

// TestHistoryRestarts kills the reader several times mid-stream, confirming
// only what was applied; batches received but not applied are lost with
// the reader. The replica must still converge: duplicates allowed, loss not.
func TestHistoryRestarts(t *testing.T) {
	ctx := context.Background()
	url := newDB(t, cluster(t), historySetup)
	mod := func(c *Config) { c.BatchChanges = 200; c.StatusInterval = 50 * time.Millisecond }
	first := newSource(t, url, mod, "h")
	tables, err := first.Prepare(ctx)
	must(t, err)
	var snap collector
	must(t, first.Snapshot(ctx, tables, snap.emit))
	pos := snap.batches[len(snap.batches)-1].Snapshotted[0].Pos

	done := make(chan struct{})
	go func() { workload(t, url, 3, 200, 2); close(done) }()
	var applied []change.Change
	r := rand.New(rand.NewPCG(7, 7))
	run := func(s *Source, applyAll bool, until func() bool) {
		var mu sync.Mutex
		var buffer []*change.Batch
		emit := func(_ context.Context, b *change.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			buffer = append(buffer, b)
			if applyAll || r.IntN(2) == 0 { // apply what is buffered, then confirm it
				var ack change.LSN
				for _, b := range buffer {
					applied = append(applied, b.Changes...)
					ack = max(ack, b.Ack)
				}
				buffer = nil
				if ack != 0 {
					s.Confirm(ack)
				}
			}
			return nil
		}
		stop := startStream(t, s, emit)
		for !until() {
			time.Sleep(5 * time.Millisecond)
		}
		must(t, stop())
		mu.Lock()
		lost := 0
		for _, b := range buffer {
			lost += len(b.Changes)
		}
		mu.Unlock()
		t.Logf("reader killed, %d changes in unapplied batches dropped", lost)
	}
	restarts := 0
	for restarts < 6 {
		s := newSource(t, url, mod, "h")
		_, err := s.Prepare(ctx)
		must(t, err)
		deadline := time.Now().Add(time.Duration(100+r.IntN(400)) * time.Millisecond)
		run(s, false, func() bool { return time.Now().After(deadline) })
		restarts++
	}
	<-done
	end := currentLSN(t, url)
	s := newSource(t, url, mod, "h")
	_, err = s.Prepare(ctx)
	must(t, err)
	run(s, true, func() bool { return change.LSN(s.confirmed.Load()) >= end })
	t.Logf("%d restarts, %d changes applied", restarts, len(applied))
	all := append(append([]change.Change(nil), snap.changes...), applied...)
	if !diff(t, replay(all, pos), tableContents(t, url)) {
		explain(t, all, pos)
	}
}
