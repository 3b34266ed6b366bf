package redshift

import (
	"math/big"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// BenchmarkMerge measures one incremental merge run on the Postgres
// stand-in: 20,000 new records (inserts and updates over 5,000 keys, a
// tenth of the updates with an unchanged TOAST note) on top of the records
// merged before, and then a run with nothing new. Redshift's speed is not
// measured here (no cluster).
func BenchmarkMerge(b *testing.B) {
	const perRun, keys = 20000, 5000
	e := newEnv(b, accounts())
	w := &workload{rng: newRand(5), tbl: accounts(), model: map[int]acct{}, unchangedKeys: map[int]bool{}, last: map[int]int{}}
	landBulk := func() {
		var parts, shardIDs, seqs, data []string
		for i := 0; i < perRun; i++ {
			id := 1 + w.rng.IntN(keys)
			a := w.randomRow()
			op, unchanged := change.OpInsert, false
			if _, ok := w.model[id]; ok {
				op, unchanged = change.OpUpdate, w.rng.IntN(10) == 0
			}
			w.model[id] = a
			w.emit(change.Change{Op: op, After: w.values(id, a, unchanged)})
			l := record(w.changes[len(w.changes)-1])
			seq := e.seq[l.shard]
			parts, shardIDs, seqs, data = append(parts, l.partition), append(shardIDs, l.shard), append(seqs, seq.String()), append(data, string(l.data))
			seq.Add(seq, big.NewInt(1))
		}
		w.changes = w.changes[:0]
		if _, err := e.conn.Exec(e.ctx, `INSERT INTO "_sluice"."hubert-redshift" SELECT now(), p, s, q, now(), d::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(p, s, q, d)`,
			parts, shardIDs, seqs, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var took time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		landBulk()
		b.StartTimer()
		start := time.Now()
		e.merge()
		took += time.Since(start)
	}
	b.ReportMetric(float64(perRun*b.N)/took.Seconds(), "records/s")
	// A run with nothing new still reads the landing table to find that out.
	start := time.Now()
	e.merge()
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/empty-run")
}
