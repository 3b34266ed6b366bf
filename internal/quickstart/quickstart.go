package quickstart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/app"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/verify"
)

// Options are quickstart's knobs.
type Options struct {
	Duration time.Duration // how long the workload runs (0: until ctx ends)
	Dir      string        // for the DuckDB mirror and state
	Rows     int           // customers before mirroring starts
	Rate     int           // changes per second the workload makes
}

// ErrDiffers is returned when the closing verify found differences.
var ErrDiffers = errors.New("verify found differences")

// Run runs the quickstart, writing its progress and closing advice to out.
func Run(ctx context.Context, out io.Writer, opt Options) error {
	duration, dir, rows, rate := opt.Duration, opt.Dir, opt.Rows, opt.Rate
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	abs, _ := filepath.Abs(dir)
	dbFile := filepath.Join(abs, "customers.duckdb")
	for _, f := range []string{dbFile, dbFile + ".wal"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the previous quickstart mirror: %w", err)
		}
	}

	fmt.Fprintln(out, "starting a throwaway Postgres ...")
	// The server outlives Ctrl-C until we have shut down cleanly.
	pg, err := testenv.StartPostgres(context.WithoutCancel(ctx), testenv.PostgresOptions{})
	if err != nil {
		return err
	}
	defer pg.Stop()
	bg := context.WithoutCancel(ctx)
	db, err := pg.CreateDatabase(bg, "shop")
	if err != nil {
		return err
	}
	srcURL := pg.URL(db)
	conn, err := pgx.Connect(bg, srcURL)
	if err != nil {
		return err
	}
	defer conn.Close(bg)
	if _, err := conn.Exec(bg, fmt.Sprintf(`
CREATE TABLE customers (
  userid     int PRIMARY KEY,
  first_name varchar(63) NOT NULL,
  last_name  varchar(63) NOT NULL,
  phone      varchar(63)
);
INSERT INTO customers
SELECT i, 'first_' || i, 'last_' || i, CASE WHEN i %% 3 = 0 THEN NULL ELSE '+1-555-' || lpad(i::text, 7, '0') END
FROM generate_series(1, %d) AS i;
CREATE TABLE orders (
  order_id int PRIMARY KEY,
  userid   int NOT NULL,
  amount   numeric(10,2) NOT NULL,
  status   text NOT NULL
);
INSERT INTO orders
SELECT i, 1 + (i * 7) %% %d, (i %% 500) + 0.99, CASE WHEN i %% 9 = 0 THEN 'cancelled' ELSE 'placed' END
FROM generate_series(1, %d) AS i;`, rows, rows, rows/2)); err != nil {
		return fmt.Errorf("create the customers and orders tables: %w", err)
	}
	fmt.Fprintf(out, "source: %s, tables public.customers with %d rows, public.orders with %d rows\n", srcURL, rows, rows/2)

	c := config.Default()
	c.Pipeline = "quickstart"
	c.Source.URL = srcURL
	c.Source.StatusInterval = time.Second
	c.Tables = []config.TableSpec{{Name: "public.customers"}, {Name: "public.orders"}}
	// The step the hand-built chain needs a stream processor for: cleanse,
	// enrich and join, aggregate, kept up to date incrementally.
	c.Views = []config.ViewSpec{
		{Name: "order_facts", SQL: `SELECT o.order_id, o.amount, upper(c.last_name) AS customer, c.phone IS NOT NULL AS reachable
FROM public.orders o LEFT JOIN public.customers c ON c.userid = o.userid
WHERE o.status <> 'cancelled'`},
		{Name: "customer_totals", SQL: `SELECT o.userid, count(*) AS orders, sum(o.amount) AS spent, max(o.amount) AS largest
FROM public.orders o JOIN public.customers c ON c.userid = o.userid
GROUP BY o.userid`},
	}
	c.Target.URL = "duckdb:" + dbFile
	c.StateDir = filepath.Join(abs, ".sluice")
	c.Batch.Interval = 100 * time.Millisecond
	if err := c.Validate(); err != nil {
		return err
	}

	// The pipeline stops on its own context, after verify, not on Ctrl-C.
	runCtx, stopRun := context.WithCancel(bg)
	defer stopRun()
	started := make(chan *app.Running, 1)
	runErr := make(chan error, 1)
	go func() { runErr <- app.Run(runCtx, c, app.Options{Started: func(r *app.Running) { started <- r }}) }()
	var r *app.Running
	select {
	case r = <-started:
	case err := <-runErr:
		return fmt.Errorf("start the mirror: %w", err)
	}

	workCtx, stopWork := context.WithCancel(ctx)
	if duration > 0 {
		workCtx, stopWork = context.WithTimeout(ctx, duration)
	}
	defer stopWork()
	var writes atomic.Int64
	workDone := make(chan error, 1)
	go func() { workDone <- workload(workCtx, srcURL, rows, rate, &writes) }()

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	tty := isTerminal(out)
loop:
	for {
		select {
		case err := <-runErr:
			return fmt.Errorf("mirror stopped: %w", err)
		case <-workCtx.Done():
			break loop
		case <-tick.C:
			progress(out, r, rows, writes.Load(), tty)
		}
	}
	if err := <-workDone; err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	progress(out, r, rows, writes.Load(), tty)
	fmt.Fprintln(out)
	fmt.Fprintln(out, "workload stopped; verifying the mirror against the source ...")
	rep, err := app.Verify(bg, c, verify.Options{})
	if err != nil {
		return err
	}
	rep.Print(out)
	stopRun()
	if err := <-runErr; err != nil {
		return err
	}
	self := "sluice"
	if exe, err := os.Executable(); err == nil && !strings.Contains(exe, "go-build") {
		self = exe // the binary as built, e.g. bin/sluice, when it is not on PATH
	}
	fmt.Fprintf(out, `
The mirror is in %s
Query it (the DuckDB CLI works too, once sluice has stopped):

  %s query --target duckdb:%s "SELECT count(*), count(phone) FROM customers"

and the views, kept up to date from the same changes (a join, and an aggregate over it):

  %s query --target duckdb:%s "SELECT * FROM customer_totals ORDER BY spent DESC LIMIT 5"

`, dbFile, self, dbFile, self, dbFile)
	if !rep.Match {
		return ErrDiffers
	}
	return nil
}

// progress prints one status line: snapshot progress, applied changes, lag.
func progress(out io.Writer, r *app.Running, rows int, writes int64, tty bool) {
	st := r.Stats()
	ts := st.Tables["public.customers"]
	snap := "snapshot pending"
	if ts != nil {
		pct := 100 * float64(ts.SnapshotRows) / float64(max(rows, 1))
		if ts.Snapshotted {
			pct = 100
		}
		snap = fmt.Sprintf("snapshot %3.0f%% (%d rows)", pct, ts.SnapshotRows)
	}
	line := fmt.Sprintf("%-9s | %s | source changes %d | applied %d | lag %.1fs | apply rate %.0f changes/s",
		st.Phase, snap, writes, st.Applied, st.LagSeconds, st.ChangesPerSecond)
	if tty {
		fmt.Fprintf(out, "\r%-110s", line)
	} else {
		fmt.Fprintln(out, line)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// workload drives inserts, updates (some of the key) and deletes at rate
// changes per second until ctx ends.
func workload(ctx context.Context, url string, rows, rate int, writes *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	next := rows + 1
	nextOrder := rows/2 + 1
	per := max(rate/20, 1) // 20 transactions a second
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		batch := &pgx.Batch{}
		for i := 0; i < per; i++ {
			id := 1 + rand.IntN(next-1)
			switch p := rand.IntN(10); {
			case p < 4:
				batch.Queue(`INSERT INTO customers VALUES ($1, $2, $3, $4)`, next, fmt.Sprintf("new_%d", next), "customer", nil)
				next++
			case p < 8:
				batch.Queue(`UPDATE customers SET phone = $2, last_name = last_name || '.' WHERE userid = $1`, id, fmt.Sprintf("+44-%07d", rand.IntN(1e7)))
			case p < 9:
				batch.Queue(`UPDATE customers SET userid = $2 WHERE userid = $1`, id, next)
				next++
			default:
				batch.Queue(`DELETE FROM customers WHERE userid = $1`, id)
			}
			// Orders come and change too: the views follow both tables.
			switch p := rand.IntN(4); {
			case p == 0:
				batch.Queue(`INSERT INTO orders VALUES ($1, $2, $3, 'placed')`, nextOrder, id, float64(rand.IntN(50000))/100)
				nextOrder++
			case p == 1:
				batch.Queue(`UPDATE orders SET status = 'cancelled' WHERE order_id = $1`, 1+rand.IntN(nextOrder-1))
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return ignoreCancel(ctx, err)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			_ = tx.Rollback(context.Background())
			return ignoreCancel(ctx, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return ignoreCancel(ctx, err)
		}
		writes.Add(int64(per))
	}
}

func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
