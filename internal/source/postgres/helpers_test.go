package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// One cluster serves every test of the package; each test gets its own
// database. Tests that need other server settings start their own.
var (
	sharedOnce sync.Once
	shared     *testenv.Postgres
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		stopFast(shared)
	}
	os.Exit(code)
}

func cluster(t *testing.T) *testenv.Postgres {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = testenv.StartPostgres(context.Background(), testenv.PostgresOptions{}) })
	if sharedErr != nil {
		t.Fatalf("start throwaway postgres: %v", sharedErr)
	}
	return shared
}

// newDB creates a database, runs the setup SQL and returns its URL.
func newDB(t *testing.T, p *testenv.Postgres, setup ...string) string {
	t.Helper()
	ctx := context.Background()
	db, err := p.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	url := p.URL(db)
	exec(t, url, setup...)
	return url
}

func exec(t testing.TB, url string, sqls ...string) {
	t.Helper()
	if len(sqls) == 0 {
		return
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url+"&client_encoding=UTF8")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func tableIDs(names ...string) []change.TableID {
	out := make([]change.TableID, len(names))
	for i, n := range names {
		id, err := change.ParseTableID(n)
		if err != nil {
			panic(err)
		}
		out[i] = id
	}
	return out
}

func newSource(t *testing.T, url string, mod func(*Config), tables ...string) *Source {
	t.Helper()
	cfg := Config{URL: url, Pipeline: pipelineName(t), Tables: tableIDs(tables...), Logger: testLogger(t),
		FlushInterval: 20 * time.Millisecond, StatusInterval: 200 * time.Millisecond, CheckInterval: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// collector gathers emitted batches.
type collector struct {
	mu      sync.Mutex
	batches []*change.Batch
	changes []change.Change
	acks    []change.LSN
	maxLen  int
}

func (c *collector) emit(_ context.Context, b *change.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, b)
	c.changes = append(c.changes, b.Changes...)
	c.maxLen = max(c.maxLen, len(b.Changes))
	if b.Ack != 0 {
		c.acks = append(c.acks, b.Ack)
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.changes)
}

func (c *collector) lastAck() change.LSN {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.acks) == 0 {
		return 0
	}
	return c.acks[len(c.acks)-1]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// currentLSN is the server's WAL insert position: with synchronous_commit
// off (as in the throwaway cluster) pg_current_wal_lsn, the write position,
// can lag behind the last commits.
func currentLSN(t *testing.T, url string) change.LSN {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, err := change.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startStream runs Stream in the background until the returned stop is called.
func startStream(t *testing.T, s *Source, emit func(context.Context, *change.Batch) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Stream(ctx, emit) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
			if err == context.Canceled {
				err = nil
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// rowKey renders key values for map keys in tests.
func rowKey(vals []change.Value) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = v.String()
	}
	return strings.Join(parts, "|")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newCluster starts a cluster of its own for a test that needs other settings.
func newCluster(t *testing.T, opt testenv.PostgresOptions) *testenv.Postgres {
	t.Helper()
	p, err := testenv.StartPostgres(context.Background(), opt)
	if err != nil {
		t.Fatalf("start throwaway postgres: %v", err)
	}
	t.Cleanup(func() { stopFast(p) })
	return p
}

// stopFast signals the postmaster itself before Stop: as root the server
// runs under runuser, which does not pass Stop's SIGINT on, so Stop would
// wait its full 10 s timeout and leave the server to exit on its own.
func stopFast(p *testenv.Postgres) {
	if b, err := os.ReadFile(filepath.Join(p.Dir, "data", "postmaster.pid")); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGINT)
		}
	}
	p.Stop()
}

var _ = fmt.Sprintf

// pipelineName is unique per test: slots are cluster-wide.
func pipelineName(t *testing.T) string {
	if n, ok := pipelineNames.Load(t); ok {
		return n.(string)
	}
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	n := b.String()
	if len(n) > 36 {
		n = n[:36]
	}
	n = fmt.Sprintf("%s_%d", n, pipelineSeq.Add(1))
	pipelineNames.Store(t, n)
	return n
}

var pipelineNames sync.Map

var pipelineSeq atomic.Int32
