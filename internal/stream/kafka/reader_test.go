package kafka

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	core "github.com/sluice-dev/sluice/internal/stream"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

// countingApplier is a consumer's pipeline target over a real one (and the
// readers' mark store): it checks, across every reader that shares it, that each partition's marks only grow and that the
// changes applied add up to the records read: no record applied twice, none
// skipped. Its applies are serialized and can be slowed down, so that a
// rebalance happens while one is in flight.
type countingApplier struct {
	tg    *duckdb.Target
	delay time.Duration

	mu      sync.Mutex
	marks   map[string]int64
	applied int
	calls   int
	err     error
}

func newCountingApplier(tg *duckdb.Target) *countingApplier {
	return &countingApplier{tg: tg, marks: map[string]int64{}}
}

func (a *countingApplier) State(ctx context.Context) (map[change.TableID]change.TableState, error) {
	return a.tg.State(ctx)
}

func (a *countingApplier) Reset(ctx context.Context, t *change.Table) error {
	return a.tg.Reset(ctx, t)
}

func (a *countingApplier) Apply(ctx context.Context, b *change.Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	time.Sleep(a.delay)
	for _, m := range b.Marks {
		o, _ := strconv.ParseInt(m.Sequence, 10, 64)
		if prev, ok := a.marks[m.Shard]; ok && o <= prev && a.err == nil {
			a.err = fmt.Errorf("partition %s marked at %d after %d: records applied twice", m.Shard, o, prev)
		}
	}
	if err := a.tg.ApplyStream(ctx, b); err != nil {
		return err
	}
	for _, m := range b.Marks {
		o, _ := strconv.ParseInt(m.Sequence, 10, 64)
		a.marks[m.Shard] = o
	}
	a.applied += len(b.Changes)
	a.calls++
	return nil
}

func (a *countingApplier) StreamMarks(ctx context.Context, stream string) (map[string]string, error) {
	return a.tg.StreamMarks(ctx, stream)
}

func (a *countingApplier) snapshot() (applied, calls int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied, a.calls, a.err
}

func produce(t *testing.T, s *Sink, cs []change.Change, per int) {
	t.Helper()
	for i := 0; i < len(cs); i += per {
		if err := s.Apply(t.Context(), &change.Batch{Changes: cs[i:min(i+per, len(cs))]}); err != nil {
			t.Fatal(err)
		}
	}
}

// The reader applies everything once into DuckDB; stopped and started again
// mid-topic it resumes from the marks in the target, and a new reader on
// the same target reads nothing again.
func TestReaderAppliesOnceAndResumesFromTheTarget(t *testing.T) {
	c := newCluster(t, 1, "t", 3)
	s := newTestSink(t, conn(c, "t"), nil)
	first, _ := changes(600, 40, 0)
	produce(t, s, first, 100)
	tg := openDuckDB(t)
	app := newCountingApplier(tg)
	r := newTestReader(t, conn(c, "t"), app, func(cfg *ReaderConfig) { cfg.BatchChanges = 70 })
	stop := runReader(t, r, app)
	waitFor(t, "the first records applied", 20*time.Second, func() bool { n, _, _ := app.snapshot(); return n == 600 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	second, _ := changes(400, 40, 600)
	produce(t, s, second, 100)
	r2 := newTestReader(t, conn(c, "t"), app, nil)
	stop = runReader(t, r2, app)
	waitFor(t, "the rest applied", 20*time.Second, func() bool { n, _, _ := app.snapshot(); return n == 1000 })
	time.Sleep(300 * time.Millisecond) // room for a wrong re-read to show
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	applied, _, err := app.snapshot()
	if err != nil || applied != 1000 {
		t.Fatalf("applied %d changes (%v), want 1000 once each", applied, err)
	}
	_, want := changes(1000, 40, 0)
	if got := rows(t, tg); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("target holds %v, want %v", got, want)
	}
	marks, err := tg.StreamMarks(t.Context(), MarkStream("t"))
	if err != nil || len(marks) != 3 {
		t.Fatalf("marks %v, %v: want one per partition", marks, err)
	}
	st := r2.Stats()
	if st.MaxLag != 0 || len(st.Partitions) != 3 {
		t.Errorf("stats %+v", st)
	}
}

// Two readers in one consumer group share a target; the second joins, and
// later the first leaves, while applies are slow: partitions move between
// them mid-batch. Every record is applied exactly once and the target ends
// equal to the source.
func TestReaderGroupRebalanceMidBatch(t *testing.T) {
	c := newCluster(t, 1, "t", 6)
	s := newTestSink(t, conn(c, "t"), nil)
	all, want := changes(3000, 120, 0)
	produce(t, s, all[:1000], 250)
	tg := openDuckDB(t)
	app := newCountingApplier(tg)
	app.delay = 150 * time.Millisecond
	group := func(cfg *ReaderConfig) {
		cfg.Group = "g"
		cfg.BatchChanges = 100
		cfg.Options = append(cfg.Options, kgo.HeartbeatInterval(100*time.Millisecond), kgo.SessionTimeout(6*time.Second), kgo.RebalanceTimeout(10*time.Second))
	}
	stopA := runReader(t, newTestReader(t, conn(c, "t"), app, group), app)
	waitFor(t, "the first reader applying", 20*time.Second, func() bool { _, n, _ := app.snapshot(); return n >= 2 })
	rb := newTestReader(t, conn(c, "t"), app, group)
	stopB := runReader(t, rb, app)
	produce(t, s, all[1000:2000], 250)
	waitFor(t, "the second reader applying", 30*time.Second, func() bool { return rb.Stats().Batches >= 2 })
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	produce(t, s, all[2000:], 250)
	waitFor(t, "everything applied", 60*time.Second, func() bool { n, _, err := app.snapshot(); return n >= 3000 || err != nil })
	time.Sleep(500 * time.Millisecond)
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	applied, calls, err := app.snapshot()
	if err != nil || applied != 3000 {
		t.Fatalf("applied %d changes in %d applies (%v), want 3000 exactly once", applied, calls, err)
	}
	if got := rows(t, tg); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("target differs from the source")
	}
	t.Logf("%d applies; the second reader made %d", calls, rb.Stats().Batches)
}

// Records that are not change records go to the reject file and are
// marked read; in strict mode the reader stops with the record's place.
func TestReaderSetsBadRecordsAside(t *testing.T) {
	c := newCluster(t, 1, "t", 1)
	s := newTestSink(t, conn(c, "t"), nil)
	cs, want := changes(5, 5, 0)
	produce(t, s, cs[:2], 10)
	raw, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.ProduceSync(t.Context(), &kgo.Record{Key: []byte("x"), Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, s, cs[2:], 10)

	strict := newTestReader(t, conn(c, "t"), openDuckDB(t), func(cfg *ReaderConfig) { cfg.StrictRecords = true })
	if err := run(t.Context(), strict, warehouse.StreamTarget{StreamWarehouse: openDuckDB(t)}); err == nil || !strings.Contains(err.Error(), "offset 2 of partition 0") {
		t.Fatalf("strict reader: %v", err)
	}

	tg := openDuckDB(t)
	r := newTestReader(t, conn(c, "t"), tg, nil)
	stop := runReader(t, r, warehouse.StreamTarget{StreamWarehouse: tg})
	waitFor(t, "every record read", 20*time.Second, func() bool { return r.Stats().Applied == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, tg); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("target holds %v, want %v", got, want)
	}
	f, err := os.Open(r.cfg.RejectFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []rejectLine
	for sc.Scan() {
		var l rejectLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0].Offset != 2 || string(lines[0].Data) != "not json" || lines[0].Key != "x" {
		t.Fatalf("reject file: %+v", lines)
	}
}

// A mark whose records retention has deleted stops the reader with the
// fix, instead of silently starting over.
func TestReaderStopsWhenRecordsAreGone(t *testing.T) {
	c := newCluster(t, 1, "t", 1)
	s := newTestSink(t, conn(c, "t"), nil)
	cs, _ := changes(10, 10, 0)
	produce(t, s, cs, 10)
	tg := openDuckDB(t)
	// A mark far past the log's end stands for records gone.
	if err := tg.ApplyStream(t.Context(), &change.Batch{Marks: []core.Mark{{Stream: MarkStream("t"), Shard: "0", Sequence: "1000"}}}); err != nil {
		t.Fatal(err)
	}
	r := newTestReader(t, conn(c, "t"), tg, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := run(ctx, r, warehouse.StreamTarget{StreamWarehouse: tg}); err == nil || !strings.Contains(err.Error(), "retention") {
		t.Fatalf("Run: %v, want the out-of-range error with its fix", err)
	}
}

// SCRAM over TLS against a broker that requires both: the sink and the
// reader configured the way Kafka users write it reach the topic.
func TestSCRAMOverTLS(t *testing.T) {
	certFile, srv := selfSigned(t)
	c := newCluster(t, 1, "t", 2, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "sluice", "s3cret"), kfake.TLS(srv))
	cn := Connection{Brokers: c.ListenAddrs(), Topic: "t", TLS: &TLS{CAFile: certFile, ServerName: "127.0.0.1"},
		SASL: &SASL{Mechanism: "SCRAM-SHA-512", Username: "sluice", Password: "s3cret"}}
	s := newTestSink(t, cn, nil)
	cs, want := changes(50, 7, 0)
	produce(t, s, cs, 25)
	tg := openDuckDB(t)
	r := newTestReader(t, cn, tg, nil)
	stop := runReader(t, r, warehouse.StreamTarget{StreamWarehouse: tg})
	waitFor(t, "every record applied", 20*time.Second, func() bool { return r.Stats().Applied == 50 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, tg); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("target holds %v, want %v", got, want)
	}
	bad := cn
	bad.SASL = &SASL{Mechanism: "SCRAM-SHA-512", Username: "sluice", Password: "wrong"}
	bs := newTestSink(t, bad, func(cfg *SinkConfig) { cfg.Options = append(cfg.Options, kgo.RetryTimeout(2*time.Second)) })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := bs.Apply(ctx, &change.Batch{Changes: cs[:1]}); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and returns its file and a
// server TLS config holding it.
func selfSigned(t *testing.T) (string, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// stealingApplier plays another group member: before the reader's first
// apply it stores partition 0's mark at that poll's last record, as if that
// member had applied them (the reader's apply waited past its session
// timeout).
type stealingApplier struct {
	*countingApplier
	mu     sync.Mutex
	stolen string // the mark stored for partition 0
	calls  []int  // changes per Apply call
}

func (a *stealingApplier) Apply(ctx context.Context, b *change.Batch) error {
	a.mu.Lock()
	if a.stolen == "" {
		for _, m := range b.Marks {
			if m.Shard == "0" {
				if m.Below == "" {
					a.mu.Unlock()
					return fmt.Errorf("group mode without a fence on partition 0: %+v", m)
				}
				if err := a.tg.ApplyStream(ctx, &change.Batch{Marks: []core.Mark{{Stream: m.Stream, Shard: "0", Sequence: m.Sequence}}}); err != nil {
					a.mu.Unlock()
					return err
				}
				a.stolen = m.Sequence
			}
		}
	}
	a.calls = append(a.calls, len(b.Changes))
	a.mu.Unlock()
	return a.countingApplier.Apply(ctx, b)
}

// A group member whose partition was applied by another member meanwhile
// (its mark at or past this poll's records) applies the poll's other
// partitions only, drops that partition's records, and reads on after the
// other member's mark: nothing is applied twice and no mark moves back.
func TestReaderFencedByAnotherMember(t *testing.T) {
	c := newCluster(t, 1, "t", 3)
	s := newTestSink(t, conn(c, "t"), nil)
	first, _ := changes(300, 600, 0) // every record its own row
	produce(t, s, first, 300)
	tg := openDuckDB(t)
	app := &stealingApplier{countingApplier: newCountingApplier(tg)}
	r := newTestReader(t, conn(c, "t"), app, func(cfg *ReaderConfig) {
		cfg.Group = "g"
		cfg.BatchChanges = 1000
	})
	stop := runReader(t, r, app)
	waitFor(t, "the poll applied without partition 0", 20*time.Second, func() bool { n, _, _ := app.snapshot(); return n > 0 })
	second, _ := changes(300, 600, 300)
	produce(t, s, second, 300)
	marks := func() map[string]string { m, _ := tg.StreamMarks(t.Context(), MarkStream("t")); return m }
	waitFor(t, "the second records applied", 20*time.Second, func() bool { n, _, _ := app.snapshot(); return n >= 450 })
	time.Sleep(500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	applied, _, err := app.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	app.mu.Lock()
	stolen, calls := app.stolen, app.calls
	app.mu.Unlock()
	if stolen == "" || len(calls) < 2 || calls[1] >= calls[0] {
		t.Fatalf("partition 0 was not fenced: stolen %q, apply sizes %v", stolen, calls)
	}
	dropped := calls[0] - calls[1]
	if applied != 600-dropped || len(rows(t, tg)) != 600-dropped {
		t.Fatalf("applied %d changes, %d rows; want 600 less the %d records of partition 0 the other member applied", applied, len(rows(t, tg)), dropped)
	}
	if m := marks(); len(m) != 3 || !warehouseLess(stolen, m["0"]) {
		t.Fatalf("marks %v: partition 0 should have gone on past the other member's %s", m, stolen)
	}
}

func warehouseLess(a, b string) bool {
	x, _ := strconv.ParseInt(a, 10, 64)
	y, _ := strconv.ParseInt(b, 10, 64)
	return x < y
}

// eventsTable is what the plain JSON events of TestReaderDecodesOtherRecords
// become.
var eventsTable = &change.Table{Schema: "public", Name: "events", Version: 1,
	Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Key: true},
		{Name: "name", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	}, Key: []int{0}}

// ackingTarget records the Ack of every batch it commits.
type ackingTarget struct {
	warehouse.StreamTarget
	mu   sync.Mutex
	acks []change.LSN
}

func (a *ackingTarget) Apply(ctx context.Context, b *change.Batch) error {
	if err := a.StreamTarget.Apply(ctx, b); err != nil {
		return err
	}
	a.mu.Lock()
	a.acks = append(a.acks, b.Ack)
	a.mu.Unlock()
	return nil
}

// A reader given its own decoder reads records that are not change records
// (plain JSON events): each becomes the changes the decoder makes of it,
// with the record's place and arrival at hand; a record it refuses is set
// aside like an invalid change record. Its batches are acked by tokens in
// emit order, which the pipeline confirms back and never shows as positions.
func TestReaderDecodesOtherRecords(t *testing.T) {
	c := newCluster(t, 1, "events", 2)
	raw, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for i, v := range []string{`{"id":1,"name":"a"}`, `{"id":2,"name":"b"}`, `not json`, `{"id":1,"name":"a2"}`, `{"id":3,"name":"c"}`} {
		// Keys spread the events over both partitions; id 1 stays on one.
		key := strconv.Itoa(i % 2)
		if strings.Contains(v, `"id":1`) {
			key = "one"
		}
		if err := raw.ProduceSync(t.Context(), &kgo.Record{Key: []byte(key), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var seen []core.ReadRecord
	decode := func(dst []change.Change, rec core.ReadRecord) ([]change.Change, error) {
		mu.Lock()
		seen = append(seen, rec)
		mu.Unlock()
		var ev struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(rec.Data, &ev); err != nil {
			return dst, fmt.Errorf("not an event: %w", err)
		}
		off, _ := strconv.ParseInt(rec.Sequence, 10, 64)
		return append(dst, change.Change{Op: change.OpInsert, Table: eventsTable, CommitTime: rec.Arrival,
			After: []change.Value{change.V(change.KindInt, strconv.FormatInt(ev.ID, 10)), change.V(change.KindText, ev.Name)},
			Pos:   change.Position{CommitLSN: change.LSN(off + 1), LSN: change.LSN(off + 1)}}), nil
	}
	tg := openDuckDB(t)
	dst := &ackingTarget{StreamTarget: warehouse.StreamTarget{StreamWarehouse: tg}}
	r := newTestReader(t, conn(c, "events"), tg, func(cfg *ReaderConfig) { cfg.Decode = decode; cfg.BatchChanges = 1 })
	p := pipeline.New(r, dst, pipeline.Options{Logger: r.log})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nil) }()
	waitFor(t, "every record read and applied", 20*time.Second, func() bool { st := r.Stats(); return st.Read == 5 && st.Applied == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rs, err := tg.DB().QueryContext(t.Context(), `SELECT id || '=' || name FROM public.events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var got []string
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if fmt.Sprint(got) != "[1=a2 2=b 3=c]" {
		t.Errorf("target holds %v, want the events' last values", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, rec := range seen {
		if rec.Stream != "events" || (rec.Shard != "0" && rec.Shard != "1") || rec.Sequence == "" || rec.Arrival.IsZero() {
			t.Errorf("the decoder was handed %+v: want the record's topic, partition, offset and timestamp", rec)
		}
	}
	if st := r.Stats(); st.Rejected != 1 {
		t.Errorf("stats %+v: want the one record the decoder refused set aside", st)
	}
	b, err := os.ReadFile(r.cfg.RejectFile)
	if err != nil || !strings.Contains(string(b), "not an event") {
		t.Errorf("reject file %q (%v): want the refused record with the decoder's error", b, err)
	}
	// Tokens: every poll's batch acked by the next number (the pipeline
	// merges queued ones), confirmed in order; status shows a batch, not a
	// position.
	dst.mu.Lock()
	acks := dst.acks
	dst.mu.Unlock()
	for i := 1; i < len(acks); i++ {
		if acks[i] <= acks[i-1] {
			t.Fatalf("committed acks %v: want them growing", acks)
		}
	}
	polls := r.Stats().Batches
	if st := p.Stats(); len(acks) == 0 || uint64(acks[len(acks)-1]) != uint64(polls) || st.ConfirmedBatch != uint64(polls) || st.ConfirmedLSN != "" {
		t.Errorf("committed acks %v, confirmed batch %d (LSN %q), for %d polls", acks, st.ConfirmedBatch, st.ConfirmedLSN, polls)
	}
}
