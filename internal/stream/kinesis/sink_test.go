package kinesis

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	core "github.com/sluice-dev/sluice/internal/stream"
	"github.com/sluice-dev/sluice/internal/testenv"
)

func newTestSink(t *testing.T, conn Connection, mod func(*SinkConfig)) *Sink {
	t.Helper()
	cfg := SinkConfig{
		Connection:  conn,
		Pipeline:    "test",
		Database:    "app",
		StateFile:   filepath.Join(t.TempDir(), "state.json"),
		BaseBackoff: time.Millisecond,
		MaxBackoff:  20 * time.Millisecond,
		Now:         fixedNow,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSink(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSinkPutsEveryChangeInKeyOrder(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "orders", 3); err != nil {
		t.Fatal(err)
	}
	s := newTestSink(t, directConnection(k, "orders"), nil)
	all := changes(1500, 40, 0)
	for _, part := range [][]change.Change{all[:700], all[700:1400], all[1400:]} {
		if err := s.Apply(ctx, &change.Batch{Changes: part}); err != nil {
			t.Fatal(err)
		}
	}
	recs := readStream(t, k.Client(), "orders")
	if len(recs) != len(all) {
		t.Fatalf("stream holds %d records, want %d (no faults: no duplicates)", len(recs), len(all))
	}
	checkPerKeyOrder(t, recs, all)
	shards := map[string]bool{}
	for _, r := range recs {
		shards[r.Shard] = true
	}
	if len(shards) != 3 {
		t.Errorf("records landed on %d shards, want all 3", len(shards))
	}
	// The record is the change, with the sink's metadata.
	d, err := change.DecodeRecord(recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if d.Meta.Pipeline != "test" || d.Meta.Database != "app" || !d.Meta.Emitted.Equal(fixedNow()) {
		t.Errorf("record meta = %+v", d.Meta)
	}
	st := s.Stats()
	if st.Records != int64(len(all)) || st.Retries != 0 || st.Throttles != 0 || st.InFlightBytes != 0 || st.RecordsPerSecond <= 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestSinkCallsStayWithinLimits(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "limits", 2); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, k)
	p.decide = func(int, []string) (string, []string) { return "", nil } // observe only
	s := newTestSink(t, proxiedConnection(k, p, "limits"), func(c *SinkConfig) { c.Concurrency = 1 })

	// 1,200 small records: the 500-record limit cuts the calls.
	small := changes(1200, 1200, 0)
	if err := s.Apply(ctx, &change.Batch{Changes: small}); err != nil {
		t.Fatal(err)
	}
	// 60 records of ~300 KB: the 5 MiB limit cuts the calls.
	big := changes(60, 60, 5000)
	for i := range big {
		big[i].After[1] = change.V(change.KindText, strings.Repeat("x", 300_000))
	}
	if err := s.Apply(ctx, &change.Batch{Changes: big}); err != nil {
		t.Fatal(err)
	}
	calls := p.Calls()
	sawCountCut, sawByteCut := false, false
	total := 0
	for _, c := range calls {
		total += c.Records
		if c.Records > MaxRecordsPerCall || c.Bytes > MaxBytesPerCall {
			t.Errorf("call of %d records, %d bytes is over Kinesis' limits", c.Records, c.Bytes)
		}
		if c.Records == MaxRecordsPerCall {
			sawCountCut = true
		}
		if c.Bytes > MaxBytesPerCall-310_000 {
			sawByteCut = true
		}
	}
	if !sawCountCut || !sawByteCut || total != 1260 {
		t.Errorf("calls %+v: want full 500-record calls and calls filled near 5 MiB, 1260 records in all", calls)
	}
	if got := len(readStream(t, k.Client(), "limits")); got != 1260 {
		t.Errorf("stream holds %d records, want 1260", got)
	}
}

// recordOfSize returns a change whose record plus partition key is exactly size bytes.
func recordOfSize(t *testing.T, size int, id int) change.Change {
	c := changes(1, 1, id)[0]
	c.After[0] = change.V(change.KindInt, strconv.Itoa(id))
	c.After[1] = change.V(change.KindText, "")
	meta := change.RecordMeta{Pipeline: "test", Database: "app", Emitted: fixedNow()}
	base := len(change.AppendRecord(nil, &c, meta)) + len(core.AppendPartitionKey(nil, &c))
	c.After[1] = change.V(change.KindText, strings.Repeat("y", size-base))
	if got := len(change.AppendRecord(nil, &c, meta)) + len(core.AppendPartitionKey(nil, &c)); got != size {
		t.Fatalf("built a record of %d bytes, want %d", got, size)
	}
	return c
}

func TestSinkRecordOverTheLimit(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "big", 1); err != nil {
		t.Fatal(err)
	}
	// Exactly 1 MiB (data plus partition key) is what Kinesis accepts:
	// kinesalite enforces the limit, so this proves the sink's is not off by one.
	exact := recordOfSize(t, MaxRecordBytes, 7)
	over := recordOfSize(t, MaxRecordBytes+1, 8)

	s := newTestSink(t, directConnection(k, "big"), nil)
	if err := s.Apply(ctx, &change.Batch{Changes: []change.Change{exact}}); err != nil {
		t.Fatalf("a record of exactly 1 MiB: %v", err)
	}
	before, _ := os.ReadFile(s.cfg.StateFile)
	err := s.Apply(ctx, &change.Batch{Changes: []change.Change{over}})
	var tooLarge *RecordTooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("Apply of an over-limit record: %v, want a RecordTooLargeError", err)
	}
	msg := err.Error()
	for _, want := range []string{"public.items", "key [8]", strconv.Itoa(MaxRecordBytes + 1), "dead-letter file"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if after, _ := os.ReadFile(s.cfg.StateFile); string(after) != string(before) {
		t.Errorf("the state file moved past a record that was not put:\n%s", after)
	}

	// With a dead-letter file the record is set aside and the rest goes on.
	dlq := filepath.Join(t.TempDir(), "dead.jsonl")
	s2 := newTestSink(t, directConnection(k, "big"), func(c *SinkConfig) { c.DeadLetterFile = dlq })
	next := changes(1, 1, 20)[0]
	if err := s2.Apply(ctx, &change.Batch{Changes: []change.Change{over, next}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dlq)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	var lines []map[string]json.RawMessage
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 1 {
		t.Fatalf("dead-letter file has %d lines, want 1", len(lines))
	}
	l := lines[0]
	if string(l["table"]) != `"public.items"` || string(l["key"]) != `"[8]"` || string(l["size"]) != strconv.Itoa(MaxRecordBytes+1) || string(l["position"]) != `"`+over.Pos.String()+`"` {
		t.Errorf("dead letter = table %s key %s size %s position %s", l["table"], l["key"], l["size"], l["position"])
	}
	if d, err := change.DecodeRecord(l["record"]); err != nil || d.Change.Pos != over.Pos {
		t.Errorf("dead letter's record does not decode to the change: %v", err)
	}
	recs := readStream(t, k.Client(), "big")
	if len(recs) != 2 { // the exact-size one and next
		t.Errorf("stream holds %d records, want 2", len(recs))
	}
	if s2.Stats().DeadLettered != 1 {
		t.Errorf("stats = %+v", s2.Stats())
	}
}

// A record the consumer cannot take (SinkConfig.Refuse says why) stops the
// sink without a dead-letter file, and is set aside with its reason with one.
func TestSinkRefusedRecord(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "refuse", 1); err != nil {
		t.Fatal(err)
	}
	refuse := func(c *change.Change, rec []byte) string {
		if c.After != nil && c.After[0].Text == "2" {
			return "a string over 65535 bytes"
		}
		return ""
	}
	cs := changes(3, 3, 0) // keys 1, 2, 3
	s := newTestSink(t, directConnection(k, "refuse"), func(c *SinkConfig) { c.Refuse = refuse })
	var refused *RecordRefusedError
	if err := s.Apply(ctx, &change.Batch{Changes: cs}); !errors.As(err, &refused) || !strings.Contains(err.Error(), "a string over 65535 bytes") {
		t.Fatalf("Apply: %v, want a RecordRefusedError with the reason", err)
	}
	dlq := filepath.Join(t.TempDir(), "dead.jsonl")
	s2 := newTestSink(t, directConnection(k, "refuse"), func(c *SinkConfig) { c.Refuse, c.DeadLetterFile = refuse, dlq })
	if err := s2.Apply(ctx, &change.Batch{Changes: cs}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dlq); strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"reason":"a string over 65535 bytes"`) {
		t.Errorf("dead-letter file:\n%s", b)
	}
	if n := len(readStream(t, k.Client(), "refuse")); n != len(cs)-1 {
		t.Errorf("stream holds %d records, want %d", n, len(cs)-1)
	}
}

func TestSinkOrderAndCompletenessUnderThrottlingAndPartialFailures(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "faulty", 2); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, k)
	rng := rand.New(rand.NewPCG(1, 2))
	p.decide = func(n int, pks []string) (string, []string) {
		switch {
		case n%7 == 1:
			return "ProvisionedThroughputExceededException", nil
		case n%7 == 3:
			return "InternalFailure", nil
		case n%11 == 5:
			return "RESET", nil // the connection drops: a network error
		case n > 60:
			return "", nil // let it finish
		}
		per := make([]string, len(pks))
		for i := range per {
			switch x := rng.IntN(100); {
			case x < 15:
				per[i] = "ProvisionedThroughputExceededException"
			case x < 20:
				per[i] = "InternalFailure"
			}
		}
		return "", per
	}
	s := newTestSink(t, proxiedConnection(k, p, "faulty"), func(c *SinkConfig) { c.Concurrency = 2 })
	// Few keys and many changes each: a call holds several records of a key,
	// so a failure in front of an accepted record of the same key happens.
	all := changes(2000, 12, 0)
	for i := 0; i < len(all); i += 400 {
		if err := s.Apply(ctx, &change.Batch{Changes: all[i : i+400]}); err != nil {
			t.Fatal(err)
		}
	}
	recs := readStream(t, k.Client(), "faulty")
	checkPerKeyOrder(t, recs, all)
	st := s.Stats()
	if st.Retries == 0 || st.Throttles == 0 || st.Records != int64(len(all)) {
		t.Errorf("stats = %+v: want retries and throttles counted, %d records accepted", st, len(all))
	}
	failed := 0
	for _, c := range p.Calls() {
		failed += c.Failed
	}
	t.Logf("%d calls, %d records failed by the proxy, %d records resent, stream holds %d records for %d changes",
		len(p.Calls()), failed, st.Retries, len(recs), len(all))
	if failed == 0 {
		t.Fatal("the proxy failed no record: the test proves nothing")
	}
}

func TestSinkGivesUpAfterMaxAttempts(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "stuck", 1); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, k)
	p.decide = func(int, []string) (string, []string) { return "ProvisionedThroughputExceededException", nil }
	s := newTestSink(t, proxiedConnection(k, p, "stuck"), func(c *SinkConfig) { c.MaxAttempts = 4 })
	before, _ := os.ReadFile(s.cfg.StateFile)
	err := s.Apply(ctx, &change.Batch{Changes: changes(10, 3, 0)})
	if err == nil || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Fatalf("Apply = %v, want it to give up after 4 attempts", err)
	}
	if after, _ := os.ReadFile(s.cfg.StateFile); string(after) != string(before) {
		t.Errorf("state moved although nothing was accepted")
	}
	// Context cancellation ends the retries too.
	s2 := newTestSink(t, proxiedConnection(k, p, "stuck"), nil)
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s2.Apply(cctx, &change.Batch{Changes: changes(10, 3, 0)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply = %v, want the context's deadline", err)
	}
}

func TestSinkStateSkipsReplayedBatches(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "replay", 1); err != nil {
		t.Fatal(err)
	}
	conn := directConnection(k, "replay")
	s := newTestSink(t, conn, nil)
	snapPos := change.Position{CommitLSN: 900}
	snap := []change.Change{
		{Op: change.OpRead, Table: itemsTable, After: []change.Value{change.V(change.KindInt, "1"), change.V(change.KindText, "a")}, Pos: snapPos},
		{Op: change.OpRead, Table: itemsTable, After: []change.Value{change.V(change.KindInt, "2"), change.V(change.KindText, "b")}, Pos: snapPos},
	}
	if err := s.Reset(ctx, itemsTable); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, &change.Batch{Changes: snap[:1]}); err != nil {
		t.Fatal(err)
	}
	// The second snapshot batch has rows at the same position: all go out.
	if err := s.Apply(ctx, &change.Batch{Changes: snap[1:], Snapshotted: []change.SnapshotDone{{Table: itemsTable, Pos: snapPos}}}); err != nil {
		t.Fatal(err)
	}
	stream := changes(10, 3, 0)
	if err := s.Apply(ctx, &change.Batch{Changes: stream}); err != nil {
		t.Fatal(err)
	}
	// A new sink on the same state file (a restart) skips a replay.
	s2 := newTestSink(t, conn, func(c *SinkConfig) { c.StateFile = s.cfg.StateFile })
	st, err := s2.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := change.TableState{Snapshotted: true, Applied: stream[9].Pos}
	if st[itemsTable.ID()] != want {
		t.Fatalf("state after restart = %+v, want %+v", st[itemsTable.ID()], want)
	}
	if err := s2.Apply(ctx, &change.Batch{Changes: append(append([]change.Change{}, snap...), stream...)}); err != nil {
		t.Fatal(err)
	}
	// 2 snapshot rows and 10 changes, after the reset marker: a truncate at
	// the snapshot's position that tells consumers to drop what an earlier
	// snapshot left.
	recs := readStream(t, k.Client(), "replay")
	if n := len(recs); n != 13 {
		t.Fatalf("stream holds %d records after a replay, want 13", n)
	}
	if r, err := change.DecodeRecord(recs[0].Data); err != nil || r.Change.Op != change.OpTruncate || r.Change.Pos != snapPos {
		t.Fatalf("first record = %+v, %v; want the reset marker (a truncate at the snapshot position)", r, err)
	}
	if err := s2.Reset(ctx, itemsTable); err != nil {
		t.Fatal(err)
	}
	if st, _ := s2.State(ctx); len(st) != 0 {
		t.Fatalf("state after Reset = %+v, want empty", st)
	}
	// A state file of another stream is refused.
	_, err = NewSink(ctx, SinkConfig{Connection: directConnection(k, "other"), StateFile: s.cfg.StateFile})
	if err == nil || !strings.Contains(err.Error(), "belongs to stream") {
		t.Fatalf("NewSink with another stream's state file: %v", err)
	}
}

func TestSinkTruncateIsABarrier(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "trunc", 1); err != nil {
		t.Fatal(err)
	}
	s := newTestSink(t, directConnection(k, "trunc"), nil)
	b := changes(5, 5, 0)
	b = append(b, change.Change{Op: change.OpTruncate, Table: itemsTable, Pos: change.Position{CommitLSN: 2000, LSN: 2000}})
	b = append(b, changes(5, 5, 1001)...)
	if err := s.Apply(ctx, &change.Batch{Changes: b}); err != nil {
		t.Fatal(err)
	}
	recs := readStream(t, k.Client(), "trunc")
	if len(recs) != 11 {
		t.Fatalf("stream holds %d records, want 11", len(recs))
	}
	d, err := change.DecodeRecord(recs[5].Data)
	if err != nil || d.Change.Op != change.OpTruncate || recs[5].PK != "public.items:" {
		t.Fatalf("record 6 = %+v (pk %q), %v; want the truncate between the two halves", d, recs[5].PK, err)
	}
}

func TestSinkByARNOnKinesisLocal(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesisLocal(t)
	if err := k.CreateStream(ctx, "byarn", 2); err != nil {
		t.Fatal(err)
	}
	s := newTestSink(t, directConnection(k, k.StreamARN("byarn")), nil)
	all := changes(60, 7, 0)
	if err := s.Apply(ctx, &change.Batch{Changes: all}); err != nil {
		t.Fatal(err)
	}
	checkPerKeyOrder(t, readStream(t, k.Client(), "byarn"), all)
}

func TestSinkExplainsAMissingStream(t *testing.T) {
	k := testenv.NewKinesalite(t)
	s := newTestSink(t, directConnection(k, "nope"), nil)
	err := s.Apply(context.Background(), &change.Batch{Changes: changes(1, 1, 0)})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Apply to a missing stream: %v", err)
	}
}

// An update that changes a row's key goes out as a delete under the old key
// and an insert under the new one, each in its own key's order.
func TestSinkSplitsKeyChangingUpdates(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "rekey", 2); err != nil {
		t.Fatal(err)
	}
	s := newTestSink(t, directConnection(k, "rekey"), nil)
	row := func(id, val string) []change.Value {
		return []change.Value{change.V(change.KindInt, id), change.V(change.KindText, val)}
	}
	pos := func(n int) change.Position { return change.Position{CommitLSN: change.LSN(n), LSN: change.LSN(n)} }
	b := []change.Change{
		{Op: change.OpInsert, Table: itemsTable, After: row("1", "a"), Pos: pos(1)},
		{Op: change.OpUpdate, Table: itemsTable, Before: row("1", "a"), After: row("2", "a"), Pos: pos(2)},
		{Op: change.OpInsert, Table: itemsTable, After: row("1", "b"), Pos: pos(3)},
		// Unchanged TOAST value: stays one update record under the new key.
		{Op: change.OpUpdate, Table: itemsTable, Before: row("2", "a"), After: []change.Value{change.V(change.KindInt, "3"), change.Unchanged}, Pos: pos(4)},
	}
	if err := s.Apply(ctx, &change.Batch{Changes: b}); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, r := range readStream(t, k.Client(), "rekey") {
		d, err := change.DecodeRecord(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[r.PK] = append(got[r.PK], d.Change.Op.String()+"@"+strconv.Itoa(int(d.Change.Pos.LSN)))
	}
	want := map[string][]string{
		"public.items:1": {"c@1", "d@2", "c@3"},
		"public.items:2": {"c@2"},
		"public.items:3": {"u@4"},
	}
	for pk, ops := range want {
		if strings.Join(got[pk], " ") != strings.Join(ops, " ") {
			t.Errorf("%s: records %v, want %v", pk, got[pk], ops)
		}
	}
	if len(got) != len(want) {
		t.Errorf("records under %d partition keys, want %d: %v", len(got), len(want), got)
	}
}

func TestSinkReportsInFlightBytes(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	if err := k.CreateStream(ctx, "slow", 1); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, k)
	release := make(chan struct{})
	p.decide = func(int, []string) (string, []string) { <-release; return "", nil }
	s := newTestSink(t, proxiedConnection(k, p, "slow"), nil)
	errc := make(chan error, 1)
	go func() { errc <- s.Apply(ctx, &change.Batch{Changes: changes(10, 10, 0)}) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().InFlightBytes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no bytes reported in flight during a call")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.InFlightBytes != 0 || st.Records != 10 {
		t.Fatalf("stats after the call = %+v", st)
	}
}
