// Command view measures what SQL views cost a mirror, in one process on
// the same WAL: three pipelines, each with its own slot created at the same
// point, drain one workload into DuckDB — the mirror alone, the mirror with
// an identity-like view, and the mirror with a two-table join view — and
// each one's throughput is reported against the mirror alone's.
//
// With -state N it measures instead the memory of a view's state: one
// pipeline with the join view alone (no mirrored table) snapshots N orders
// into DuckDB, and the process's peak RSS and the state file's size are
// reported (the aim: 10M input rows under 1 GiB); -state-target none
// drops the output instead of loading a DuckDB target with it.
//
// Usage: go run ./bench/view [-orders N] [-changes N] [-tx N] [-state N]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/view"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

func main() {
	orders := flag.Int("orders", 100_000, "rows of orders (customers: orders/100)")
	changes := flag.Int("changes", 100_000, "order updates in the streaming run")
	perTx := flag.Int("tx", 10, "changes per source transaction")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the streaming runs to this file")
	state := flag.Int("state", 0, "measure the peak RSS of a join view's state over this many orders instead")
	stateTarget := flag.String("state-target", "duckdb", "with -state: where the view's output goes, duckdb or none (the engine's memory alone)")
	flag.Parse()
	profile = *cpuprofile
	err := error(nil)
	if *state > 0 {
		err = stateRun(context.Background(), *state, *stateTarget == "duckdb")
	} else {
		err = run(context.Background(), *orders, *changes, *perTx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var profile string

// A run is one pipeline over both tables, with these views.
type runSpec struct {
	name  string
	views []view.Spec
}

var runs = []runSpec{
	{name: "mirror"},
	{name: "identity", views: []view.Spec{{Name: "open_orders",
		SQL: "SELECT id, customer_id, amount, status FROM public.orders WHERE status <> 'cancelled'"}}},
	{name: "join", views: []view.Spec{{Name: "order_facts",
		SQL: `SELECT o.id AS order_id, o.amount, c.name AS customer_name, c.tier
FROM public.orders o LEFT JOIN public.customers c ON c.id = o.customer_id WHERE o.status <> 'cancelled'`}}},
}

// shop is a throwaway Postgres holding orders and their customers.
type shop struct {
	pg        *testenv.Postgres
	url       string
	conn      *pgx.Conn
	dir       string
	customers int
}

func (s *shop) close() {
	s.conn.Close(context.Background())
	s.pg.Stop()
	os.RemoveAll(s.dir)
}

func newShop(ctx context.Context, orders int) (*shop, error) {
	pg, err := testenv.StartPostgres(ctx, testenv.PostgresOptions{Settings: []string{"max_wal_size = 4GB", "checkpoint_timeout = 30min"}})
	if err != nil {
		return nil, err
	}
	s := &shop{pg: pg, customers: max(orders/100, 1)}
	db, err := pg.CreateDatabase(ctx, "bench")
	if err == nil {
		s.url = pg.URL(db)
		s.conn, err = pgx.Connect(ctx, s.url)
	}
	if err != nil {
		pg.Stop()
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "sluice-bench-view-"); err != nil {
		s.close()
		return nil, err
	}
	for _, q := range []string{
		`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, tier text NOT NULL)`,
		`CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL)`,
		fmt.Sprintf(`INSERT INTO customers SELECT i, 'customer ' || i, (ARRAY['basic', 'gold', 'platinum'])[1 + i %% 3] FROM generate_series(1, %d) i`, s.customers),
		fmt.Sprintf(`INSERT INTO orders SELECT i, 1 + i %% %d, i %% 1000 + 0.5, CASE WHEN i %% 10 = 0 THEN 'cancelled' ELSE 'open' END FROM generate_series(1, %d) i`, s.customers, orders),
		`VACUUM ANALYZE`,
	} {
		if _, err := s.conn.Exec(ctx, q); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// stateRun snapshots orders through the join view alone and reports the
// process's peak RSS.
func stateRun(ctx context.Context, orders int, intoDuckDB bool) error {
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	s, err := newShop(ctx, orders)
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Printf("# sluice view state benchmark (target: DuckDB %v), %s: %d orders, %d customers, join view only\n",
		intoDuckDB, time.Now().UTC().Format(time.RFC3339), orders, s.customers)
	src, err := postgres.New(postgres.Config{URL: s.url, Pipeline: "bench_state", StatusInterval: time.Second,
		Tables: []change.TableID{{Schema: "public", Name: "customers"}, {Schema: "public", Name: "orders"}}})
	if err != nil {
		return err
	}
	defer src.Close()
	tables, err := src.Prepare(ctx)
	if err != nil {
		return err
	}
	var tgt pipeline.Target = discard{}
	if intoDuckDB {
		t, err := duckdb.Open(ctx, filepath.Join(s.dir, "target.duckdb"), duckdb.Options{})
		if err != nil {
			return err
		}
		defer t.Close()
		tgt = t
	}
	statePath := filepath.Join(s.dir, "state.views.duckdb")
	e, err := view.Open(ctx, statePath, runs[2].views, tables, nil)
	if err != nil {
		return err
	}
	defer e.Close()
	d, err := drain(ctx, src, tgt, view.NewTransform(e, nil), tables, 0, 1)
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	st, err := os.Stat(statePath)
	if err != nil {
		return err
	}
	in := orders + s.customers
	fmt.Printf("snapshot of %d input rows through the join view: %.1f s, %.0f rows/s\n", in, d.Seconds(), float64(in)/d.Seconds())
	fmt.Printf("peak RSS of the process: %d MiB (before: %d MiB; aim < 1024 MiB at 10M rows); state file %d MiB, %.1f bytes per input row\n",
		ru.Maxrss>>10, before.Maxrss>>10, st.Size()>>20, float64(st.Size())/float64(in))
	return nil
}

func run(ctx context.Context, orders, changes, perTx int) error {
	s, err := newShop(ctx, orders)
	if err != nil {
		return err
	}
	defer s.close()
	url, conn, dir, customers := s.url, s.conn, s.dir, s.customers
	fmt.Printf("# sluice view benchmark (DuckDB target), %s: %d orders, %d customers, %d updates in transactions of %d\n",
		time.Now().UTC().Format(time.RFC3339), orders, customers, changes, perTx)

	// Every pipeline takes its snapshot (slot created, rows loaded, views'
	// initial output) before the workload, so only the stream is timed.
	type prepared struct {
		spec   runSpec
		src    *postgres.Source
		tgt    *duckdb.Target
		tables []*change.Table
		tr     pipeline.Transform
		close  func()
	}
	var ps []*prepared
	defer func() {
		for _, p := range ps {
			p.close()
		}
	}()
	for _, r := range runs {
		src, err := postgres.New(postgres.Config{URL: url, Pipeline: "bench_" + r.name, StatusInterval: time.Second,
			Tables: []change.TableID{{Schema: "public", Name: "customers"}, {Schema: "public", Name: "orders"}}})
		if err != nil {
			return err
		}
		tables, err := src.Prepare(ctx)
		if err != nil {
			return err
		}
		tgt, err := duckdb.Open(ctx, filepath.Join(dir, r.name+".duckdb"), duckdb.Options{})
		if err != nil {
			return err
		}
		p := &prepared{spec: r, src: src, tgt: tgt, tables: tables, close: func() { tgt.Close(); src.Close() }}
		if len(r.views) > 0 {
			e, err := view.Open(ctx, filepath.Join(dir, r.name+".views.duckdb"), r.views, tables, nil)
			if err != nil {
				return err
			}
			p.tr = view.NewTransform(e, []change.TableID{tables[0].ID(), tables[1].ID()})
			p.close = func() { e.Close(); tgt.Close(); src.Close() }
		}
		ps = append(ps, p)
		if _, err := drain(ctx, p.src, p.tgt, p.tr, p.tables, 0, len(p.tables)+len(r.views)); err != nil {
			return fmt.Errorf("%s: snapshot: %w", r.name, err)
		}
	}
	// The workload: order updates moving orders between customers and in
	// and out of the filter.
	for i := 0; i < changes; i += perTx {
		if _, err := conn.Exec(ctx, `UPDATE orders SET amount = amount + 1, customer_id = 1 + (customer_id + 7) % $3,
			status = CASE WHEN id % 7 = $4 THEN 'cancelled' ELSE 'open' END WHERE id BETWEEN $1 AND $2`,
			1+i%orders, min(i%orders+perTx, orders), customers, i%7); err != nil {
			return err
		}
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var base float64
	for _, p := range ps {
		d, err := drain(ctx, p.src, p.tgt, p.tr, p.tables, changes, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", p.spec.name, err)
		}
		rate := float64(changes) / d.Seconds()
		if base == 0 {
			base = rate
		}
		fmt.Printf("streaming %-8s %8.0f changes/s  ratio %.2f against the mirror alone\n", p.spec.name, rate, rate/base)
	}
	return nil
}

// discard is a target that keeps nothing: the view engine's memory alone.
type discard struct{}

func (discard) State(context.Context) (map[change.TableID]change.TableState, error) {
	return map[change.TableID]change.TableState{}, nil
}
func (discard) Reset(context.Context, *change.Table) error { return nil }
func (discard) Apply(context.Context, *change.Batch) error { return nil }

// observed wraps a target to see what each batch applied.
type observed struct {
	pipeline.Target
	after func(*change.Batch)
}

func (o observed) Apply(ctx context.Context, b *change.Batch) error {
	if err := o.Target.Apply(ctx, b); err != nil {
		return err
	}
	o.after(b)
	return nil
}

// drain runs the pipeline until the target has applied want streamed
// changes of the mirrored tables (with want 0, until it has applied
// markers SnapshotDones: the mirrored tables' and the views') and returns
// how long it took.
func drain(ctx context.Context, src *postgres.Source, tgt pipeline.Target, tr pipeline.Transform, tables []*change.Table, want, markers int) (time.Duration, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	applied, snapshotted := 0, 0
	obs := observed{Target: tgt, after: func(b *change.Batch) {
		snapshotted += len(b.Snapshotted)
		for i := range b.Changes {
			if c := &b.Changes[i]; c.Op != change.OpRead && (c.Table.Name == "orders" || c.Table.Name == "customers") {
				applied++
			}
		}
		if want == 0 && snapshotted >= markers || want > 0 && applied >= want {
			cancel()
		}
	}}
	start := time.Now()
	err := pipeline.New(src, obs, pipeline.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Transform: tr}).Run(runCtx, tables)
	return time.Since(start), err
}
