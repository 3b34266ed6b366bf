package warehousetest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// BenchTable is a 7-column table like the ones the end-to-end bench uses.
func BenchTable() *change.Table {
	col := func(name, typ string, k change.Kind) change.Column {
		return change.Column{Name: name, Type: change.Type{Name: typ, Kind: k}, Nullable: name != "id", Key: name == "id"}
	}
	return &change.Table{Schema: "public", Name: "bench", Version: 1, Key: []int{0}, Columns: []change.Column{
		col("id", "bigint", change.KindInt),
		col("name", "text", change.KindText),
		col("amount", "numeric(12,2)", change.KindNumeric),
		col("created", "timestamp with time zone", change.KindTimestampTZ),
		col("flag", "boolean", change.KindBool),
		col("score", "double precision", change.KindFloat),
		col("note", "text", change.KindText),
	}}
}

func benchRow(t *change.Table, id, gen int) []change.Value {
	ts := time.Unix(1700000000+int64(id), 0).UTC().Format("2006-01-02T15:04:05+00:00")
	return []change.Value{
		change.V(change.KindInt, strconv.Itoa(id)),
		change.V(change.KindText, fmt.Sprintf("name %d", id)),
		change.V(change.KindNumeric, fmt.Sprintf("%d.%02d", id%100000, gen%100)),
		change.V(change.KindTimestampTZ, ts),
		change.V(change.KindBool, strconv.FormatBool(id%2 == 0)),
		change.V(change.KindFloat, strconv.FormatFloat(float64(id)*1.5, 'g', -1, 64)),
		change.V(change.KindText, fmt.Sprintf("generation %d of row %d, some text to carry", gen, id)),
	}
}

// BenchApply measures Apply of batches of n changes. kind is "insert" (new
// keys), "mixed" (60% updates, 20% inserts, 20% deletes over existing
// keys) or "snapshot" (op=r rows into a freshly reset table). It reports
// changes/s.
func BenchApply(b *testing.B, tg Target, kind string, n int) {
	ctx := context.Background()
	t := BenchTable()
	if err := tg.Reset(ctx, t); err != nil {
		b.Fatal(err)
	}
	pos := 1
	next := 0
	if kind == "mixed" {
		// A table of existing rows to update and delete.
		var cs []change.Change
		for ; next < 50000; next++ {
			cs = append(cs, change.Change{Op: change.OpInsert, Table: t, After: benchRow(t, next, 0), Pos: Pos(pos)})
			pos++
		}
		if err := tg.Apply(ctx, &change.Batch{Changes: cs}); err != nil {
			b.Fatal(err)
		}
	}
	batches := make([]*change.Batch, b.N)
	live := next
	for i := range batches {
		cs := make([]change.Change, n)
		for j := range cs {
			c := &cs[j]
			c.Table, c.Pos = t, Pos(pos)
			pos++
			switch kind {
			case "snapshot":
				c.Op, c.After, c.Pos = change.OpRead, benchRow(t, next, 0), change.Position{CommitLSN: 1}
				next++
			case "insert":
				c.Op, c.After = change.OpInsert, benchRow(t, next, 0)
				next++
			default:
				switch r := (i*n + j) % 10; {
				case r < 6:
					id := (i*n + j*7) % live
					c.Op, c.After = change.OpUpdate, benchRow(t, id, i+1)
				case r < 8:
					c.Op, c.After = change.OpInsert, benchRow(t, next, 0)
					next++
				default:
					c.Op, c.Before = change.OpDelete, benchRow(t, (i*n+j*13)%live, 0)
				}
			}
		}
		batches[i] = &change.Batch{Changes: cs}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := tg.Apply(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "changes/s")
}
