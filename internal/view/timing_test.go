package view

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestTiming(t *testing.T) {
	w := &workload{r: rand.New(rand.NewPCG(1, 7)), m: newModel()}
	e := open(t, "", oracleViews, orders, customers, events)
	apply(t, e, w.initial())
	tot := map[string]time.Duration{}
	execHook = func(q string, d time.Duration) {
		if len(q) > 70 {
			q = q[:70]
		}
		tot[q] += d
	}
	start := time.Now()
	for range 30 {
		apply(t, e, w.next().batch())
	}
	fmt.Println("per txn", time.Since(start)/30)
	execHook = nil
	var ks []string
	for k := range tot {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return tot[ks[i]] > tot[ks[j]] })
	for _, k := range ks[:25] {
		fmt.Println(tot[k]/30, k)
	}
}
