package view

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// TestCrashes runs the oracle workload with the engine closed at random
// points (a crash: no Confirm, the target may or may not have committed the
// last outputs) and reopened from its state file, the source replaying
// from its confirmed position with other batch cuts. The target folds by
// position as warehouses do. The final output must equal the SQL run in
// full, and no output rule may break on the way.
func TestCrashes(t *testing.T) {
	for seed := uint64(1); seed <= 2; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			w := &workload{r: rand.New(rand.NewPCG(seed, 7)), m: newModel()}
			path := filepath.Join(t.TempDir(), "views.db")
			reopen := func(e *Engine) *Engine {
				if e != nil {
					if err := e.Close(); err != nil {
						t.Fatal(err)
					}
				}
				e, err := Open(context.Background(), path, oracleViews, []*change.Table{orders, customers, events}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return e
			}
			e := reopen(nil)
			defer func() { e.Close() }()
			f := newFolded()
			f.apply(t, apply(t, e, w.initial()))
			var stream []change.Change
			for range 35 {
				stream = append(stream, w.next().changes...)
			}
			confirmed := w.lsn - 35*1000
			pos, crashes := 0, 0
			for pos < len(stream) {
				end := min(len(stream), pos+1+r.IntN(12))
				b := &change.Batch{Changes: stream[pos:end]}
				last := stream[end-1].Pos.CommitLSN
				if end == len(stream) || stream[end].Pos.CommitLSN != last {
					b.Ack = last
				} else {
					for i := end - 1; i >= pos; i-- {
						if stream[i].Pos.CommitLSN != last {
							b.Ack = stream[i].Pos.CommitLSN
							break
						}
					}
				}
				out, err := e.Apply(context.Background(), b)
				if err != nil {
					t.Fatal(err)
				}
				crash := r.IntN(6)
				if os.Getenv("NOCRASH") != "" {
					crash = 5
				}
				if crash != 0 {
					f.apply(t, out) // the target committed
				}
				if crash <= 1 {
					crashes++
					e = reopen(e)
					for pos = 0; pos < len(stream) && stream[pos].Pos.CommitLSN <= confirmed; pos++ {
					}
					continue
				}
				if b.Ack > 0 {
					e.Confirm(b.Ack)
					confirmed = b.Ack
				}
				pos = end
			}
			if crashes < 5 {
				t.Fatalf("only %d crashes", crashes)
			}
			f.check(t, newOracle(t), w.m, fmt.Sprintf("after %d crashes", crashes))
		})
	}
}
