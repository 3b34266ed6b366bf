package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/testenv"
)

var (
	binary string
	pg     *testenv.Postgres
	envs   atomic.Int64
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/sluice")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return 0, fmt.Errorf("build sluice: %w", err)
	}
	pg, err = testenv.StartPostgres(context.Background(), testenv.PostgresOptions{})
	if err != nil {
		return 0, err
	}
	defer pg.Stop()
	return m.Run(), nil
}

// env is one test's source database, target and working directory.
type env struct {
	t      *testing.T
	src    string // source URL
	target string // duckdb:PATH or postgres URL
	dir    string
	name   string // pipeline name
}

func newEnv(t *testing.T, targetKind string) *env {
	t.Helper()
	ctx := context.Background()
	db, err := pg.CreateDatabase(ctx, "src_"+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, src: pg.URL(db), dir: t.TempDir(), name: strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))}
	if len(e.name) > 30 {
		e.name = e.name[:30]
	}
	// Slots are per cluster: a test run again (-count) gets its own.
	e.name = fmt.Sprintf("%s_%d", e.name, envs.Add(1))
	switch targetKind {
	case "duckdb":
		e.target = "duckdb:" + filepath.Join(e.dir, "mirror.duckdb")
	case "postgres":
		tdb, err := pg.CreateDatabase(ctx, "dst_"+t.Name())
		if err != nil {
			t.Fatal(err)
		}
		e.target = pg.URL(tdb)
	}
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.src)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) args(cmd string, tables string, extra ...string) []string {
	a := []string{cmd, "--source", e.src, "--tables", tables, "--target", e.target, "--pipeline", e.name, "--state-dir", filepath.Join(e.dir, "state")}
	return append(a, extra...)
}

// sluice runs a command to completion and returns its output and exit code.
func (e *env) sluice(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("sluice %v: %v", args, err)
	}
	return out.String(), code
}

// proc is a background `sluice run`.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func (e *env) start(args ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.kill()
		t.Fatalf("sluice did not stop within 60s of SIGTERM:\n%s", p.out.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("sluice exited %d after SIGTERM:\n%s", code, p.out.String())
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitRunning waits until the process's admin endpoint is up.
func (e *env) waitRunning(p *proc) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if strings.Contains(p.out.String(), "sluice running") {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			e.t.Fatalf("sluice did not start:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitVerified runs verify until it passes or the deadline passes.
func (e *env) waitVerified(tables string, within time.Duration, running ...*proc) string {
	e.t.Helper()
	return e.waitVerifiedArgs(e.args("verify", tables), within, running...)
}

// waitVerifiedArgs runs `sluice <args>` (a verify) until it passes or the
// deadline passes; a running sluice that stops meanwhile fails the test at
// once, and every running one's log is shown on failure.
func (e *env) waitVerifiedArgs(args []string, within time.Duration, running ...*proc) string {
	e.t.Helper()
	logs := func() string {
		var b strings.Builder
		for i, p := range running {
			fmt.Fprintf(&b, "\nsluice #%d:\n%s", i+1, p.out.String())
		}
		return b.String()
	}
	deadline := time.Now().Add(within)
	for {
		for _, p := range running {
			if p.exited() {
				e.t.Fatalf("sluice stopped while waiting for verify to pass:%s", logs())
			}
		}
		out, code := e.sluice(args...)
		if code == 0 {
			return out
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("verify did not pass within %s (exit %d):\n%s%s", within, code, out, logs())
		}
		time.Sleep(time.Second)
	}
}

// workload makes random changes to tables created by createWorkTables.
type workload struct {
	src  string
	rng  *rand.Rand
	next int
}

const workTables = "public.accounts,public.notes"

func (e *env) createWorkTables(rows int) {
	e.exec(fmt.Sprintf(`
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), tags text[], meta jsonb, updated timestamptz DEFAULT now());
CREATE TABLE notes (account int, seq int, body text, PRIMARY KEY (account, seq));
INSERT INTO accounts SELECT i, 'owner ' || i, i * 1.25, ARRAY['a', 'b' || i], jsonb_build_object('i', i), now() FROM generate_series(1, %d) i;
INSERT INTO notes SELECT i %% 100, i, repeat('x', i %% 50) FROM generate_series(1, %d) i;`, rows, rows))
}

func newWorkload(src string, seed uint64, rows int) *workload {
	return &workload{src: src, rng: rand.New(rand.NewPCG(seed, seed)), next: rows + 1}
}

// run makes n transactions of random sizes with every kind of change.
func (w *workload) run(ctx context.Context, n int) error {
	conn, err := pgx.Connect(ctx, w.src)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for i := 0; i < n; i++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		size := 1 + w.rng.IntN(20)
		if w.rng.IntN(20) == 0 {
			size = 500
		}
		for j := 0; j < size; j++ {
			id := 1 + w.rng.IntN(w.next)
			var q string
			var args []any
			switch p := w.rng.IntN(100); {
			case p < 35:
				q, args = `INSERT INTO accounts VALUES ($1, $2, $3, ARRAY['n'], '{"new": true}', now()) ON CONFLICT (id) DO NOTHING`, []any{w.next, fmt.Sprintf("o%d", w.next), w.rng.IntN(100000)}
				w.next++
			case p < 65:
				q, args = `UPDATE accounts SET balance = balance + 1, tags = tags || 'u'::text, updated = now() WHERE id = $1`, []any{id}
			case p < 72:
				q, args = `UPDATE accounts SET id = $2 WHERE id = $1`, []any{id, w.next}
				w.next++
			case p < 82:
				q, args = `DELETE FROM accounts WHERE id = $1`, []any{id}
			case p < 86:
				// delete and re-insert of one key in one transaction
				q, args = `WITH d AS (DELETE FROM accounts WHERE id = $1 RETURNING *) INSERT INTO accounts SELECT id, owner || ' again', balance, tags, meta, now() FROM d`, []any{id}
			case p < 96:
				q, args = `INSERT INTO notes VALUES ($1, $2, $3) ON CONFLICT (account, seq) DO UPDATE SET body = excluded.body`, []any{id % 100, w.rng.IntN(5000), fmt.Sprintf("note %d", w.rng.IntN(1e6))}
			default:
				q, args = `DELETE FROM notes WHERE account = $1`, []any{id % 100}
			}
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				_ = tx.Rollback(context.Background())
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if w.rng.IntN(200) == 0 {
			if _, err := tx.Exec(ctx, `TRUNCATE notes`); err != nil {
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// metrics fetches /metrics from the running sluice of pipeline name.
func (e *env) metrics(name string) string {
	e.t.Helper()
	addr, err := os.ReadFile(filepath.Join(e.dir, "state", name+".admin"))
	if err != nil {
		e.t.Fatalf("admin address of %s: %v", name, err)
	}
	resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
