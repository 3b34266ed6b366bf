package kinesis

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/testenv"
)

var (
	pgOnce sync.Once
	pgSrv  *testenv.Postgres
	pgErr  error
)

// testDB is a fresh database in one throwaway cluster shared by the tests.
func testDB(t *testing.T) string {
	t.Helper()
	pgOnce.Do(func() { pgSrv, pgErr = testenv.StartPostgres(context.Background(), testenv.PostgresOptions{}) })
	if pgErr != nil {
		t.Fatalf("start throwaway postgres: %v", pgErr)
	}
	db, err := pgSrv.CreateDatabase(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return pgSrv.URL(db)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		fastStop(pgSrv)
	}
	os.Exit(code)
}

// fastStop asks the postmaster itself for a fast shutdown before Stop: the
// server runs under runuser, which does not pass Stop's SIGINT on, so Stop
// alone waits 10 s and kills it.
func fastStop(p *testenv.Postgres) {
	if b, err := os.ReadFile(filepath.Join(p.Dir, "data", "postmaster.pid")); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGINT)
		}
	}
	p.Stop()
}

// pgApplier is a small real pipeline target and mark store: one Postgres
// transaction stores the rows, a log of every change applied, and the
// batch's marks. The log's unique position makes a change applied twice
// fail the apply (and the test).
type pgApplier struct {
	mu     sync.Mutex
	conn   *pgx.Conn
	failAt int // the n-th Apply fails (fatally) after doing its work, before commit
	calls  int
	tables map[*change.Table]bool
}

func newPGApplier(t *testing.T, url string) *pgApplier {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, `
CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, val text, commit_lsn bigint NOT NULL, lsn bigint NOT NULL);
CREATE TABLE IF NOT EXISTS applied (n bigserial PRIMARY KEY, id bigint, commit_lsn bigint, lsn bigint, UNIQUE (commit_lsn, lsn));
CREATE TABLE IF NOT EXISTS marks (stream text, shard text, seq text NOT NULL, PRIMARY KEY (stream, shard));`)
	if err != nil {
		t.Fatal(err)
	}
	return &pgApplier{conn: conn, tables: map[*change.Table]bool{}}
}

func (a *pgApplier) State(context.Context) (map[change.TableID]change.TableState, error) {
	return nil, nil
}

func (a *pgApplier) Reset(context.Context, *change.Table) error {
	return errors.New("a stream consumer resets nothing")
}

func (a *pgApplier) Apply(ctx context.Context, b *change.Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	tx, err := a.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var q pgx.Batch
	for i := range b.Changes {
		c := &b.Changes[i]
		a.tables[c.Table] = true
		id := c.Key()[0].Text
		q.Queue(`INSERT INTO applied (id, commit_lsn, lsn) VALUES ($1, $2, $3)`, id, int64(c.Pos.CommitLSN), int64(c.Pos.LSN))
		q.Queue(`INSERT INTO items AS t VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET val = excluded.val, commit_lsn = excluded.commit_lsn, lsn = excluded.lsn
			WHERE (t.commit_lsn, t.lsn) < (excluded.commit_lsn, excluded.lsn)`, id, c.After[1].Text, int64(c.Pos.CommitLSN), int64(c.Pos.LSN))
	}
	for _, m := range b.Marks {
		q.Queue(`INSERT INTO marks VALUES ($1, $2, $3) ON CONFLICT (stream, shard) DO UPDATE SET seq = excluded.seq`, m.Stream, m.Shard, m.Sequence)
	}
	if err := tx.SendBatch(ctx, &q).Close(); err != nil {
		return err
	}
	if a.calls == a.failAt {
		// Fatal: the pipeline stops, as when the process dies here.
		return &pipeline.TargetError{Class: pipeline.Fatal, Err: errors.New("injected failure before commit")}
	}
	return tx.Commit(ctx)
}

func (a *pgApplier) StreamMarks(ctx context.Context, stream string) (map[string]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rows, err := a.conn.Query(ctx, `SELECT shard, seq FROM marks WHERE stream = $1`, stream)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for rows.Next() {
		var s, q string
		if err := rows.Scan(&s, &q); err != nil {
			return nil, err
		}
		out[s] = q
	}
	return out, rows.Err()
}

func (a *pgApplier) count(t *testing.T) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int
	if err := a.conn.QueryRow(context.Background(), `SELECT count(*) FROM applied`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkApplied checks that every change was applied exactly once (the
// unique log guarantees at most once), in position order per key, and that
// items holds each key's last value.
func (a *pgApplier) checkApplied(t *testing.T, want []change.Change) {
	t.Helper()
	ctx := context.Background()
	a.mu.Lock()
	defer a.mu.Unlock()
	rows, err := a.conn.Query(ctx, `SELECT id, commit_lsn, lsn FROM applied ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[change.Position]bool{}
	last := map[int64]change.Position{}
	for rows.Next() {
		var id, c, l int64
		if err := rows.Scan(&id, &c, &l); err != nil {
			t.Fatal(err)
		}
		p := change.Position{CommitLSN: change.LSN(c), LSN: change.LSN(l)}
		if prev, ok := last[id]; ok && !prev.Less(p) {
			t.Fatalf("key %d: change %s applied after the later change %s", id, p, prev)
		}
		last[id] = p
		got[p] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != len(want) {
		t.Fatalf("applied %d changes, want %d", len(got), len(want))
	}
	final := map[string]string{}
	for _, c := range want {
		if !got[c.Pos] {
			t.Fatalf("change %s was not applied", c.Pos)
		}
		final[c.After[0].Text] = c.After[1].Text
	}
	for id, val := range final {
		var v string
		if err := a.conn.QueryRow(ctx, `SELECT val FROM items WHERE id = $1`, id).Scan(&v); err != nil || v != val {
			t.Fatalf("items %s = %q (%v), want %q", id, v, err, val)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// run runs a consumer's pipeline: the reader into dst.
func run(ctx context.Context, r *Reader, dst pipeline.Target) error {
	return pipeline.New(r, dst, pipeline.Options{Logger: r.log}).Run(ctx, nil)
}

// runReader runs a reader's pipeline until stop is called; stop returns
// Run's error.
func runReader(t *testing.T, r *Reader, dst pipeline.Target) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, r, dst) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func newTestReader(t *testing.T, conn Connection, app MarkStore, mod func(*ReaderConfig)) *Reader {
	t.Helper()
	cfg := ReaderConfig{
		Connection:   conn,
		RejectFile:   filepath.Join(t.TempDir(), "rejects.jsonl"),
		PollInterval: 30 * time.Millisecond,
		ReadInterval: time.Millisecond,
		ShardRefresh: 200 * time.Millisecond,
		BaseBackoff:  5 * time.Millisecond,
		MaxBackoff:   50 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewReader(context.Background(), cfg, app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestReaderReadsEverythingOnceAndResumesFromMarks(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "mirror", 3); err != nil {
		t.Fatal(err)
	}
	conn := directConnection(k, "mirror")
	sink := newTestSink(t, conn, nil)
	all := changes(1200, 50, 0)
	if err := sink.Apply(ctx, &change.Batch{Changes: all[:900]}); err != nil {
		t.Fatal(err)
	}
	app := newPGApplier(t, testDB(t))
	r := newTestReader(t, conn, app, nil)
	stop := runReader(t, r, app)
	waitFor(t, "900 changes applied", func() bool { return app.count(t) >= 900 })
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	st := r.Stats()
	if st.Read != 900 || st.Applied != 900 || st.Rejected != 0 || len(st.Shards) != 3 {
		t.Errorf("stats = %+v", st)
	}
	for id, s := range st.Shards {
		if s.Applied == "" || s.Applied != s.Sequence {
			t.Errorf("shard %s: applied mark %q, last read %q", id, s.Applied, s.Sequence)
		}
	}
	if len(app.tables) != 1 {
		t.Errorf("changes of one table shape came with %d *Table values, want 1 (interned)", len(app.tables))
	}

	// More changes; a new reader starts after the stored marks and reads
	// nothing twice (the applier's log would refuse a duplicate).
	if err := sink.Apply(ctx, &change.Batch{Changes: all[900:]}); err != nil {
		t.Fatal(err)
	}
	r2 := newTestReader(t, conn, app, nil)
	stop2 := runReader(t, r2, app)
	waitFor(t, "1200 changes applied", func() bool { return app.count(t) >= 1200 })
	time.Sleep(150 * time.Millisecond) // a few more polls: nothing else may arrive
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	app.checkApplied(t, all)
	if got := r2.Stats().Read; got != 300 {
		t.Errorf("restarted reader read %d records, want the 300 new ones", got)
	}
}

func TestReaderRestartsFromMarksAfterAFailedApply(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "flaky", 2); err != nil {
		t.Fatal(err)
	}
	conn := directConnection(k, "flaky")
	sink := newTestSink(t, conn, nil)
	all := changes(600, 20, 0)
	app := newPGApplier(t, testDB(t))
	app.failAt = 3
	// Small reads, so the failure hits in the middle of the stream.
	small := func(c *ReaderConfig) { c.RecordsPerCall = 50; c.BatchChanges = 50 }
	r := newTestReader(t, conn, app, small)
	for i := 0; i < len(all); i += 100 {
		if err := sink.Apply(ctx, &change.Batch{Changes: all[i : i+100]}); err != nil {
			t.Fatal(err)
		}
	}
	err := run(ctx, r, app)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Run = %v, want the applier's failure", err)
	}
	if n := app.count(t); n == 0 || n >= len(all) {
		t.Fatalf("%d changes applied before the failure, want some", n)
	}
	app.failAt = 0
	stop := runReader(t, newTestReader(t, conn, app, small), app)
	waitFor(t, "all changes applied", func() bool { return app.count(t) >= len(all) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	app.checkApplied(t, all)
}

func TestReaderSetsBadRecordsAside(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "dirty", 1); err != nil {
		t.Fatal(err)
	}
	c := k.Client()
	good := changes(3, 3, 0)
	put := func(data []byte) string {
		out, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("dirty"), Data: data, PartitionKey: aws.String("x")})
		if err != nil {
			t.Fatal(err)
		}
		return *out.SequenceNumber
	}
	meta := change.RecordMeta{Pipeline: "p", Emitted: fixedNow()}
	put(change.AppendRecord(nil, &good[0], meta))
	bad := map[string][]byte{}
	for _, data := range [][]byte{[]byte("not json at all"), {0xff, 0xfe, '{', '}'}, []byte(`{"op":"c","after":{"id":1}}`)} {
		bad[put(data)] = data
	}
	put(change.AppendRecord(nil, &good[1], meta))
	put(change.AppendRecord(nil, &good[2], meta))

	app := newPGApplier(t, testDB(t))
	r := newTestReader(t, directConnection(k, "dirty"), app, nil)
	stop := runReader(t, r, app)
	waitFor(t, "3 good changes applied", func() bool { return app.count(t) >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	app.checkApplied(t, good)
	if st := r.Stats(); st.Rejected != 3 || st.Read != 6 {
		t.Errorf("stats = %+v, want 6 read, 3 rejected", st)
	}
	f, err := os.Open(r.cfg.RejectFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var l rejectLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		n++
		if want, ok := bad[l.Sequence]; !ok || string(l.Data) != string(want) || l.Shard != "shardId-000000000000" || l.Stream != "dirty" || !strings.Contains(l.Error, change.ErrBadRecord.Error()) {
			t.Errorf("reject line %s", sc.Bytes())
		}
	}
	if n != 3 {
		t.Fatalf("reject file has %d lines, want 3", n)
	}

	// Strict: the first bad record stops the reader, naming it.
	app2 := newPGApplier(t, testDB(t))
	strict := newTestReader(t, directConnection(k, "dirty"), app2, func(c *ReaderConfig) { c.StrictRecords = true })
	err = run(ctx, strict, app2)
	if err == nil || !strings.Contains(err.Error(), "shardId-000000000000") || !strings.Contains(err.Error(), "strict records off") {
		t.Fatalf("strict Run = %v", err)
	}
	for seq := range bad {
		if strings.Contains(err.Error(), seq) {
			return
		}
	}
	t.Fatalf("strict error %q names no bad record's sequence number", err)
}

// Resharding on kinesis-local, with the stream addressed by ARN: a shard is
// split with records on both sides of the split; the children are read only
// after the parent is drained, so each key's changes apply in order.
func TestReaderReshardingReadsParentsBeforeChildren(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesisLocal(t)
	if err := k.CreateStream(ctx, "split", 1); err != nil {
		t.Fatal(err)
	}
	arn := k.StreamARN("split")
	conn := directConnection(k, arn)
	sink := newTestSink(t, conn, nil)
	all := changes(360, 24, 0)
	if err := sink.Apply(ctx, &change.Batch{Changes: all[:120]}); err != nil {
		t.Fatal(err)
	}
	c := k.Client()
	ls, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamARN: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	parent := *ls.Shards[0].ShardId
	mid := new(big.Int).Lsh(big.NewInt(1), 127)
	if _, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamARN: aws.String(arn), ShardToSplit: aws.String(parent), NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitActive(ctx, "split"); err != nil {
		t.Fatal(err)
	}
	// Records on the children before the reader even starts: reading them
	// before the parent would apply some keys out of order.
	if err := sink.Apply(ctx, &change.Batch{Changes: all[120:240]}); err != nil {
		t.Fatal(err)
	}
	app := newPGApplier(t, testDB(t))
	r := newTestReader(t, conn, app, nil)
	stop := runReader(t, r, app)
	waitFor(t, "240 changes applied", func() bool { return app.count(t) >= 240 })
	if err := sink.Apply(ctx, &change.Batch{Changes: all[240:300]}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "300 changes applied", func() bool { return app.count(t) >= 300 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if len(st.Shards) != 3 || !st.Shards[parent].Ended || st.Shards[parent].Applied != ShardEnd {
		t.Fatalf("shard stats = %+v: want the parent ended and marked, and two children", st.Shards)
	}
	marks, _ := app.StreamMarks(ctx, "split")
	if marks[parent] != ShardEnd || len(marks) != 3 {
		t.Fatalf("marks = %v", marks)
	}

	// A restart skips the drained parent and reads the rest once.
	if err := sink.Apply(ctx, &change.Batch{Changes: all[300:]}); err != nil {
		t.Fatal(err)
	}
	r2 := newTestReader(t, conn, app, nil)
	stop2 := runReader(t, r2, app)
	waitFor(t, "360 changes applied", func() bool { return app.count(t) >= 360 })
	time.Sleep(150 * time.Millisecond)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	app.checkApplied(t, all)
	if _, read := r2.Stats().Shards[parent]; read {
		t.Errorf("the restarted reader read the drained parent again")
	}
	if got := r2.Stats().Read; got != 60 {
		t.Errorf("restarted reader read %d records, want 60", got)
	}
}

func TestReaderExplainsAMissingStream(t *testing.T) {
	k := testenv.NewKinesalite(t)
	app := newPGApplier(t, testDB(t))
	err := run(context.Background(), newTestReader(t, directConnection(k, "nope"), app, nil), app)
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Run on a missing stream: %v", err)
	}
}

// Reads that Kinesis refuses are retried: throttled and failed GetRecords,
// an expired iterator, failed GetShardIterator and ListShards calls, a
// dropped connection. Nothing is lost or applied twice.
func TestReaderRidesOutThrottlingAndErrors(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "bumpy", 2); err != nil {
		t.Fatal(err)
	}
	all := changes(400, 30, 0)
	if err := newTestSink(t, directConnection(k, "bumpy"), nil).Apply(ctx, &change.Batch{Changes: all}); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, k)
	p.decideOther = func(op string, n int) string {
		switch {
		case op == "ListShards" && n == 1:
			return "RESET"
		case op == "ListShards" && n == 2:
			return "LimitExceededException"
		case op == "GetShardIterator" && n <= 2:
			return "InternalFailure"
		case op == "GetRecords" && n%4 == 1:
			return "ProvisionedThroughputExceededException"
		case op == "GetRecords" && n == 6:
			return "ExpiredIteratorException"
		case op == "GetRecords" && n == 10:
			return "RESET"
		}
		return ""
	}
	app := newPGApplier(t, testDB(t))
	// Small reads so that faults hit in the middle of the shards.
	r := newTestReader(t, proxiedConnection(k, p, "bumpy"), app, func(c *ReaderConfig) { c.RecordsPerCall = 25 })
	stop := runReader(t, r, app)
	waitFor(t, "400 changes applied", func() bool { return app.count(t) >= 400 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	app.checkApplied(t, all)
	throttles := int64(0)
	for _, s := range r.Stats().Shards {
		throttles += s.Throttles
	}
	if throttles == 0 {
		t.Errorf("no throttled read counted: stats %+v", r.Stats())
	}
}
