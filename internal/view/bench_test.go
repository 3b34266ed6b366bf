package view

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// Benchmarks of the view engine on its real state file. Figures go to
// bench/view/README.md. Run: go test -run '^$' -bench . ./internal/view

const benchRows = 20_000

func benchEngine(b *testing.B, specs []Spec, nOrders, nCustomers int) *Engine {
	b.Helper()
	path := filepath.Join(b.TempDir(), "views.db")
	e, err := Open(context.Background(), path, specs, []*change.Table{orders, customers}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	rows := map[*change.Table][][]change.Value{}
	for i := 1; i <= nCustomers; i++ {
		rows[customers] = append(rows[customers], []change.Value{I(i), S(fmt.Sprintf("customer %d", i)), S(tiers[i%3])})
	}
	for i := 1; i <= nOrders; i++ {
		rows[orders] = append(rows[orders], ord(i, 1+i%max(nCustomers, 1), fmt.Sprintf("%d.00", i%100), "new"))
	}
	snap := snapshot(1000, rows)
	for i := 0; i < len(snap.Changes); i += 5000 {
		part := &change.Batch{Changes: snap.Changes[i:min(i+5000, len(snap.Changes))]}
		if i+5000 >= len(snap.Changes) {
			part.Snapshotted = snap.Snapshotted
		}
		if _, err := e.Apply(context.Background(), part); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// run applies b.N transactions of perTx order updates each, batched as
// the pipeline would (up to batchTx transactions per batch), and reports
// the cost per input change.
func run(b *testing.B, e *Engine, perTx, batchTx, nOrders int) {
	lsn := change.LSN(10_000)
	b.ResetTimer()
	outputs := 0
	for i := 0; i < b.N; {
		batch := &change.Batch{}
		for j := 0; j < batchTx && i < b.N; j, i = j+1, i+1 {
			lsn += 1000
			t := &tx{lsn: lsn}
			for k := range perTx {
				id := 1 + (i*perTx+k)%nOrders
				t.upd(orders, ord(id, 1+(id+i)%50, strconv.Itoa(i%1000)+".50", "new")...)
			}
			batch.Changes = append(batch.Changes, t.changes...)
			batch.Ack = lsn
		}
		out, err := e.Apply(context.Background(), batch)
		if err != nil {
			b.Fatal(err)
		}
		outputs += len(out.Changes)
		e.Confirm(batch.Ack)
	}
	b.StopTimer()
	changes := float64(b.N * perTx)
	b.ReportMetric(changes/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/changes, "ns/change")
	if outputs == 0 {
		b.Fatal("no outputs")
	}
}

// An identity-like view (projection and a filter) over one table.
func BenchmarkIdentity(b *testing.B) {
	spec := []Spec{{Name: "mirror", SQL: "SELECT id, customer_id, amount, status FROM orders WHERE status <> 'cancelled'"}}
	b.Run("1change-per-tx", func(b *testing.B) { run(b, benchEngine(b, spec, benchRows, 0), 1, 50, benchRows) })
	// A quiet source: every batch holds one transaction.
	b.Run("1change-per-batch", func(b *testing.B) { run(b, benchEngine(b, spec, benchRows, 0), 1, 1, benchRows) })
	b.Run("1000changes-per-tx", func(b *testing.B) { run(b, benchEngine(b, spec, benchRows, 0), 1000, 1, benchRows) })
}

// A two-table LEFT JOIN view; order updates move orders between customers.
func BenchmarkJoin(b *testing.B) {
	spec := []Spec{{Name: "order_facts", SQL: `SELECT o.id AS order_id, o.amount, c.name AS customer_name, c.tier
		FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE o.status <> 'cancelled'`}}
	b.Run("10changes-per-tx", func(b *testing.B) { run(b, benchEngine(b, spec, benchRows, 1000), 10, 20, benchRows) })
	b.Run("1000changes-per-tx", func(b *testing.B) { run(b, benchEngine(b, spec, benchRows, 1000), 1000, 1, benchRows) })
}

// A grouped view over the join.
func BenchmarkGroupBy(b *testing.B) {
	spec := []Spec{{Name: "tiers", SQL: `SELECT c.tier, count(*) AS n, sum(o.amount) AS total, max(o.amount) AS hi
		FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.tier`}}
	b.Run("100changes-per-tx", func(b *testing.B) { run(b, benchEngine(b, spec, benchRows, 1000), 100, 5, benchRows) })
}

// State size and memory for many input rows: the snapshot of
// BENCH_VIEW_ROWS orders (default 200,000) through a join view.
func BenchmarkStateSize(b *testing.B) {
	n := 200_000
	if s := os.Getenv("BENCH_VIEW_ROWS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	spec := []Spec{{Name: "order_facts", SQL: `SELECT o.id AS order_id, o.amount, c.name AS customer_name, c.tier
		FROM orders o LEFT JOIN customers c ON c.id = o.customer_id`}}
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		path := filepath.Join(dir, "views.db")
		e, err := Open(context.Background(), path, spec, []*change.Table{orders, customers}, nil)
		if err != nil {
			b.Fatal(err)
		}
		lsn := change.LSN(1000)
		for i := 0; i < n; i += 5000 {
			batch := &change.Batch{}
			for j := i; j < min(i+5000, n); j++ {
				batch.Changes = append(batch.Changes, change.Change{Op: change.OpRead, Table: orders,
					After: ord(j+1, 1+j%1000, fmt.Sprintf("%d.00", j%100), "new"), Pos: change.Position{CommitLSN: lsn}})
			}
			if i+5000 >= n {
				batch.Snapshotted = []change.SnapshotDone{{Table: orders, Pos: change.Position{CommitLSN: lsn}}, {Table: customers, Pos: change.Position{CommitLSN: lsn}}}
			}
			if _, err := e.Apply(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
		e.Close()
		b.StopTimer()
		st, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Size())/float64(n), "state-bytes/row")
		b.ReportMetric(float64(n)/b.Elapsed().Seconds()*float64(b.N), "snapshot-rows/s")
		b.ReportMetric(rssMiB(), "RSS-MiB")
		b.StartTimer()
	}
}

func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// The floor the engine is measured against, in the same run: the same
// DuckDB applying each source change as one UPDATE by key to a 20,000-row
// table, committing every 50 transactions (what a plain mirror of one
// table costs with no view at all).
func BenchmarkBaselineDuckDBUpdate(b *testing.B) {
	db, err := sql.Open("duckdb", filepath.Join(b.TempDir(), "base.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"SET threads = 1",
		fmt.Sprintf("CREATE TABLE t AS SELECT range::INTEGER AS id, 1 AS customer_id, 1.00::DECIMAL(12,2) AS amount, 'new' AS status FROM range(1, %d)", benchRows+1),
		"CREATE INDEX ti ON t(id)"} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	st, err := db.Prepare("UPDATE t SET amount = ?::DECIMAL(12,2), customer_id = ? WHERE id = ?")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += 50 {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for j := i; j < min(i+50, b.N); j++ {
			if _, err := tx.Stmt(st).Exec(strconv.Itoa(j%1000)+".50", 1+j%50, 1+j%benchRows); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}
