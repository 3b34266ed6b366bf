package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// viewsConfig mirrors customers and orders and keeps two views over them:
// a filtered LEFT JOIN and a grouped aggregate with HAVING.
func viewsConfig(e *env, extra string) string {
	return fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.customers, {name: public.orders, mirror: false}]
views:
  - name: order_facts
    sql: |
      SELECT o.id AS order_id, o.amount, c.name AS customer_name, c.tier
      FROM public.orders o LEFT JOIN public.customers c ON c.id = o.customer_id
      WHERE o.status <> 'cancelled'
  - name: tier_totals
    sql: |
      SELECT c.tier, count(*) AS orders, sum(o.amount) AS total, max(o.amount) AS biggest
      FROM public.orders o JOIN public.customers c ON c.id = o.customer_id
      GROUP BY c.tier HAVING count(*) > 2
target: %q
state_dir: %q
batch: {max_changes: 300, interval: 50ms}
%s`, e.name, e.src, e.target, filepath.Join(e.dir, "state"), extra)
}

// viewKills is how often TestViews kills sluice while changes flow.
const viewKills = 3

func createShop(e *env) {
	e.exec(`
CREATE TABLE customers (id int PRIMARY KEY, name text, tier text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric(10,2), status text);
INSERT INTO customers SELECT i, 'c' || i, (ARRAY['basic', 'gold', 'platinum'])[1 + i % 3] FROM generate_series(1, 200) i;
INSERT INTO orders SELECT i, 1 + i % 230, i * 1.5, CASE WHEN i % 10 = 0 THEN 'cancelled' ELSE 'open' END FROM generate_series(1, 3000) i;`)
}

// shopWorkload changes customers and orders in random transactions: rows
// leaving and entering the filter, orders moving between customers,
// customers with many orders deleted, tiers changing, groups emptied.
func shopWorkload(ctx context.Context, src string, seed uint64, txns int) error {
	conn, err := pgx.Connect(ctx, src)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(seed, seed))
	next := 10_000 + int(seed)*100_000
	for i := 0; i < txns && ctx.Err() == nil; i++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		for j := 0; j < 1+rng.IntN(6); j++ {
			var q string
			switch p := rng.IntN(100); {
			case p < 25:
				next++
				q = fmt.Sprintf("INSERT INTO orders VALUES (%d, %d, %d.25, 'open')", next, 1+rng.IntN(240), rng.IntN(5000))
			case p < 40:
				q = fmt.Sprintf("UPDATE orders SET status = CASE WHEN status = 'open' THEN 'cancelled' ELSE 'open' END WHERE id = %d", 1+rng.IntN(3000))
			case p < 55:
				q = fmt.Sprintf("UPDATE orders SET customer_id = %d WHERE id = %d", 1+rng.IntN(240), 1+rng.IntN(3000))
			case p < 65:
				q = fmt.Sprintf("UPDATE orders SET amount = amount + 1 WHERE customer_id = %d", 1+rng.IntN(240))
			case p < 72:
				q = fmt.Sprintf("DELETE FROM orders WHERE id = %d", 1+rng.IntN(3000))
			case p < 82:
				q = fmt.Sprintf("UPDATE customers SET tier = (ARRAY['basic', 'gold', 'platinum', 'new'])[%d] WHERE id = %d", 1+rng.IntN(4), 1+rng.IntN(240))
			case p < 88:
				q = fmt.Sprintf("DELETE FROM customers WHERE id = %d", 1+rng.IntN(240))
			case p < 94:
				q = fmt.Sprintf("INSERT INTO customers VALUES (%d, 'n%d', 'gold') ON CONFLICT (id) DO UPDATE SET name = excluded.name", 1+rng.IntN(240), i)
			default:
				// insert then delete in one transaction
				next++
				q = fmt.Sprintf("INSERT INTO orders VALUES (%d, 1, 1, 'open'); DELETE FROM orders WHERE id = %d", next, next)
			}
			if _, err := tx.Exec(ctx, q); err != nil {
				_ = tx.Rollback(context.Background())
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		// About 50 transactions a second: the view engine evaluates each
		// small transaction on its own (about 100 a second per view here),
		// and the test is about correctness, not a race it would lose.
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Views end to end, for each target: the view tables are verified against
// the views' SQL run over the source while changes flow, and sluice is
// killed with SIGKILL several times along the way; a table with mirror:
// false feeds the views and is not mirrored.
func TestViews(t *testing.T) {
	for _, kind := range []string{"duckdb", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, kind)
			createShop(e)
			cfg := filepath.Join(e.dir, "sluice.yaml")
			writeFile(t, cfg, viewsConfig(e, ""))
			verifyArgs := []string{"verify", "--config", cfg}

			p := e.start("run", "--config", cfg)
			e.waitRunning(p)
			out := e.waitVerifiedArgs(verifyArgs, 90*time.Second, p)
			for _, want := range []string{"public.order_facts", "public.tier_totals", "public.customers"} {
				if !strings.Contains(out, want) {
					t.Errorf("verify does not compare %s:\n%s", want, out)
				}
			}
			if strings.Contains(out, "public.orders ") {
				t.Errorf("verify compares public.orders, which has mirror: false:\n%s", out)
			}

			wctx, stop := context.WithCancel(ctx)
			werr := make(chan error, 1)
			go func() { werr <- shopWorkload(wctx, e.src, 1, 600) }()
			rng := rand.New(rand.NewPCG(11, 11))
			for i := 0; i < viewKills; i++ {
				time.Sleep(time.Duration(400+rng.IntN(1200)) * time.Millisecond)
				p.kill()
				p = e.start("run", "--config", cfg)
				e.waitRunning(p)
			}
			// Verify while the workload still runs: one consistent point.
			if out, code := e.sluice(verifyArgs...); code != 0 {
				t.Errorf("verify while changes flow after kills: exit %d\n%s", code, out)
			}
			stop()
			if err := <-werr; err != nil && wctx.Err() == nil {
				t.Fatal(err)
			}
			e.waitVerifiedArgs(verifyArgs, 90*time.Second, p)
			out, code := e.sluice("query", "--config", cfg, "SELECT count(*) AS n FROM public.tier_totals")
			if code != 0 || !strings.Contains(out, "(1 rows)") {
				t.Errorf("query of a view table: exit %d\n%s", code, out)
			}
			p.stop(t)
		})
	}
}

// A view that cannot be compiled stops start-up with the line, the column
// and the name, before anything is created at the target.
func TestViewErrors(t *testing.T) {
	e := newEnv(t, "duckdb")
	createShop(e)
	cfg := filepath.Join(e.dir, "sluice.yaml")
	writeFile(t, cfg, strings.Replace(viewsConfig(e, ""), "c.tier\n      FROM", "c.tierr\n      FROM", 1))
	out, code := e.sluice("run", "--config", cfg)
	if code == 0 || !strings.Contains(out, "tierr") || !strings.Contains(out, "order_facts") || !strings.Contains(out, "line 1") {
		t.Errorf("an unknown column in a view: exit %d\n%s", code, out)
	}
	writeFile(t, cfg, strings.Replace(viewsConfig(e, ""), "WHERE o.status <> 'cancelled'", "WHERE o.status <> 'cancelled' AND random() < 2", 1))
	out, code = e.sluice("run", "--config", cfg)
	if code == 0 || !strings.Contains(out, "random") {
		t.Errorf("a volatile function in a view: exit %d\n%s", code, out)
	}
}

// A view failing on a row stops alone: the mirror and the other views go
// on, through a kill -9, status says why, and changing the view rebuilds
// it.
func TestViewStopsAlone(t *testing.T) {
	e := newEnv(t, "duckdb")
	createShop(e)
	cfg := filepath.Join(e.dir, "sluice.yaml")
	codes := func(cast string) string {
		return strings.Replace(viewsConfig(e, ""), "target:", `  - name: order_codes
    sql: |
      SELECT o.id, `+cast+`(o.status AS INTEGER) AS code FROM public.orders o WHERE o.status NOT IN ('open', 'cancelled')
target:`, 1)
	}
	writeFile(t, cfg, codes("CAST"))
	verifyArgs := []string{"verify", "--config", cfg}
	p := e.start("run", "--config", cfg)
	e.waitRunning(p)
	e.exec(`INSERT INTO orders VALUES (90001, 5, 10.00, '7')`)
	e.waitVerifiedArgs(verifyArgs, 90*time.Second, p)

	e.exec(`INSERT INTO orders VALUES (90002, 5, 11.00, 'x')`)
	e.exec(`UPDATE customers SET name = 'renamed' WHERE id = 5; INSERT INTO orders VALUES (90003, 5, 12.00, 'open')`)
	const why = `Could not convert string 'x' to INT32`
	waitOutput := func(what string, want string, args ...string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, _ := e.sluice(args...)
			if strings.Contains(out, want) {
				return
			}
			if time.Now().After(deadline) || p.exited() {
				t.Fatalf("%s: %q not in\n%s\nsluice:\n%s", what, want, out, p.out.String())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	query := func(q string) []string { return []string{"query", "--config", cfg, q} }
	waitOutput("status names the stopped view", why, "status", "--config", cfg, "--json")
	if out, _ := e.sluice("status", "--config", cfg); !strings.Contains(out, "view public.order_codes STOPPED") || !strings.Contains(out, why) {
		t.Errorf("status does not show the stopped view:\n%s", out)
	}
	waitOutput("the mirror goes on", "renamed", query("SELECT name FROM public.customers WHERE id = 5")...)
	waitOutput("the other views go on", "renamed", query("SELECT customer_name FROM public.order_facts WHERE order_id = 90003")...)
	if out, _ := e.sluice(query("SELECT count(*) AS n FROM public.order_codes")...); !strings.Contains(out, "\n1\n") && !strings.Contains(out, " 1\n") {
		t.Errorf("the stopped view's table should keep its one row:\n%s", out)
	}
	if m := e.metrics(e.name); !strings.Contains(m, `sluice_view_stopped{pipeline="`+e.name+`",view="public.order_codes"} 1`) ||
		!strings.Contains(m, `view="public.order_facts"} 0`) {
		t.Errorf("/metrics does not show the stopped view:\n%s", m)
	}
	// Verify compares everything else and says the view is not compared.
	out, code := e.sluice(verifyArgs...)
	if code == 0 || !strings.Contains(out, "VIEW STOPPED, not compared") || strings.Count(out, " match\n") != 3 {
		t.Errorf("verify with a stopped view: exit %d\n%s", code, out)
	}

	p.kill()
	p = e.start("run", "--config", cfg)
	e.waitRunning(p)
	e.exec(`UPDATE customers SET name = 'again' WHERE id = 5`)
	waitOutput("status after a restart", why, "status", "--config", cfg, "--json")
	waitOutput("the mirror after a restart", "again", query("SELECT customer_name FROM public.order_facts WHERE order_id = 90003")...)
	p.stop(t)

	// Fixed: the view is rebuilt from its kept inputs and verifies.
	writeFile(t, cfg, codes("TRY_CAST"))
	p = e.start("run", "--config", cfg)
	e.waitRunning(p)
	e.waitVerifiedArgs(verifyArgs, 90*time.Second, p)
	out, _ = e.sluice(query("SELECT id, code FROM public.order_codes ORDER BY id")...)
	if !strings.Contains(out, "90001") || !strings.Contains(out, "90002") {
		t.Errorf("the rebuilt view:\n%s", out)
	}
	p.stop(t)
}

// A column a grouped view reads is dropped while transactions write both
// of its inputs, then sluice is killed and replays them: the view stops,
// the rest verifies. This once crashed DuckDB inside the view state (an
// index created again inside the transaction that then wrote the table).
func TestViewInputColumnDroppedUnderLoad(t *testing.T) {
	e := newEnv(t, "postgres")
	e.exec(`
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), category text);
CREATE TABLE sales (id bigint, sold_at date, product_id int, qty int, note text, PRIMARY KEY (id, sold_at)) PARTITION BY RANGE (sold_at);
CREATE TABLE sales_2025 PARTITION OF sales FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales_2026 PARTITION OF sales FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO products SELECT i, 'p' || i, (i % 50) + 0.99, (ARRAY['tools','food','toys'])[1 + i % 3] FROM generate_series(1, 500) i;
INSERT INTO sales SELECT i, DATE '2025-06-01' + (i % 400), 1 + i % 500, 1 + i % 7, repeat('n', i % 300) FROM generate_series(1, 50000) i;`)
	cfg := filepath.Join(e.dir, "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
pipeline: %s
source: {url: %q}
tables: [public.products, public.sales]
views:
  - name: sales_by_category
    sql: |
      SELECT p.category, count(*) AS sales, sum(s.qty * p.price) AS revenue
      FROM public.sales s JOIN public.products p ON p.id = s.product_id
      GROUP BY p.category
  - name: product_names
    sql: SELECT id, upper(name) AS name, price FROM public.products
target: %q
state_dir: %q
`, e.name, e.src, e.target, filepath.Join(e.dir, "state")))
	p := e.start("run", "--config", cfg)
	e.waitRunning(p)
	ctx, stop := context.WithCancel(context.Background())
	werr := make(chan error, 3)
	for w := range 3 {
		go func() {
			conn, err := pgx.Connect(ctx, e.src)
			if err != nil {
				werr <- err
				return
			}
			defer conn.Close(context.Background())
			for i := 0; ctx.Err() == nil; i++ {
				id := 1_000_000*(w+1) + i
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO sales VALUES ($1::bigint, DATE '2025-06-01' + ($1::int % 500), 1 + $1::int % 500, 1 + $1::int % 5, 'w')`, id); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `UPDATE products SET price = price + 0.01 WHERE id = 1 + $1::int % 500`, id)
					return err
				})
				if err != nil && ctx.Err() == nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
	}
	time.Sleep(6 * time.Second)
	e.exec(`ALTER TABLE products DROP COLUMN category`)
	time.Sleep(4 * time.Second)
	p.kill()
	time.Sleep(4 * time.Second) // a backlog for the restart to replay in large batches
	p = e.start("run", "--config", cfg)
	e.waitRunning(p)
	time.Sleep(8 * time.Second)
	stop()
	for range 3 {
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _ := e.sluice("verify", "--config", cfg)
		if strings.Contains(out, "VIEW STOPPED, not compared") && strings.Count(out, " match\n") == 3 {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("verify:\n%s\nsluice:\n%s", out, p.out.String())
		}
		time.Sleep(time.Second)
	}
	p.stop(t)
}
