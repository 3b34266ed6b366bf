package kafka

import (
	"context"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	core "github.com/sluice-dev/sluice/internal/stream"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

var itemsTable = &change.Table{
	Schema: "public", Name: "items", Version: 1,
	Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Key: true},
		{Name: "val", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	},
	Key: []int{0},
}

// changes makes n upserts spread over keys ids 1..keys, with positions
// growing in order: change i is at commit LSN 1000+first+i. It returns them
// and each key's last value.
func changes(n, keys, first int) ([]change.Change, map[string]string) {
	out := make([]change.Change, n)
	want := map[string]string{}
	for i := range out {
		seq := first + i
		id := strconv.Itoa(seq%keys + 1)
		out[i] = change.Change{
			Op:         change.OpInsert,
			Table:      itemsTable,
			After:      []change.Value{change.V(change.KindInt, id), change.V(change.KindText, "v"+strconv.Itoa(seq))},
			Pos:        change.Position{CommitLSN: change.LSN(1000 + seq), LSN: change.LSN(1000 + seq)},
			TxID:       uint32(seq),
			CommitTime: time.Unix(1_700_000_000, 0),
		}
		if i > 0 && i%keys != 0 {
			out[i].Op = change.OpUpdate
		}
		want[id] = "v" + strconv.Itoa(seq)
	}
	return out, want
}

// newCluster starts an in-process Kafka cluster on 127.0.0.1 with topic t
// of the given partitions.
func newCluster(t *testing.T, brokers int, topic string, partitions int32, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(brokers), kfake.SeedTopics(partitions, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func conn(c *kfake.Cluster, topic string) Connection {
	return Connection{Brokers: c.ListenAddrs(), Topic: topic}
}

func newTestSink(t *testing.T, cn Connection, mod func(*SinkConfig)) *Sink {
	t.Helper()
	cfg := SinkConfig{Connection: cn, Pipeline: "test", Database: "app", StateFile: filepath.Join(t.TempDir(), "state.json"),
		Now: func() time.Time { return time.Unix(1_750_000_000, 0) }}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSink(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// topicRecord is one record read back from a topic.
type topicRecord struct {
	Partition int32
	Offset    int64
	Key       string
	Change    change.Change
}

// readTopic reads every record of every partition from the start, each
// partition in its order.
func readTopic(t *testing.T, c *kfake.Cluster, topic string) []topicRecord {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []topicRecord
	idle := 0
	for idle < 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			d, err := change.DecodeRecord(r.Value)
			if err != nil {
				t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
			}
			out = append(out, topicRecord{r.Partition, r.Offset, string(r.Key), d.Change})
			n++
		})
		if n == 0 {
			idle++
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out
}

// checkOnTopic checks that every change of want is on the topic under its
// partition key, on the partition Spread picks over partitions, and that
// each key's last copies are in position order.
func checkOnTopic(t *testing.T, recs []topicRecord, want []change.Change, partitions int) {
	t.Helper()
	last := map[change.Position]int{}
	for i, r := range recs {
		if r.Change.Op == change.OpTruncate {
			continue
		}
		if pk := string(core.AppendPartitionKey(nil, &r.Change)); pk != r.Key {
			t.Fatalf("record %d/%d has key %q, want %q", r.Partition, r.Offset, r.Key, pk)
		}
		if p := core.Spread(r.Key, partitions); int32(p) != r.Partition {
			t.Fatalf("record of key %s on partition %d, want %d", r.Key, r.Partition, p)
		}
		last[r.Change.Pos] = i
	}
	byKey := map[string][]int{}
	for _, c := range want {
		i, ok := last[c.Pos]
		if !ok {
			t.Fatalf("the change at %s is not on the topic", c.Pos)
		}
		byKey[recs[i].Key] = append(byKey[recs[i].Key], i)
	}
	for k, idx := range byKey {
		if !sort.IntsAreSorted(idx) {
			t.Fatalf("the last copies of key %s are out of order: %v", k, idx)
		}
	}
}

// openDuckDB opens a DuckDB target in the test's directory: the real
// warehouse the reader applies to.
func openDuckDB(t *testing.T) *duckdb.Target {
	t.Helper()
	tg, err := duckdb.Open(t.Context(), filepath.Join(t.TempDir(), "target.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// rows returns public.items of the target: id → val.
func rows(t *testing.T, tg *duckdb.Target) map[string]string {
	t.Helper()
	rs, err := tg.DB().QueryContext(t.Context(), `SELECT id::VARCHAR, val FROM public.items`)
	if err != nil {
		return map[string]string{}
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var id, val string
		if err := rs.Scan(&id, &val); err != nil {
			t.Fatal(err)
		}
		out[id] = val
	}
	return out
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newTestReader(t *testing.T, cn Connection, marks MarkStore, mod func(*ReaderConfig)) *Reader {
	t.Helper()
	cfg := ReaderConfig{Connection: cn, RejectFile: filepath.Join(t.TempDir(), "rejects.jsonl")}
	cfg.Options = append(cfg.Options, kgo.FetchMaxWait(100*time.Millisecond))
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewReader(t.Context(), cfg, marks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// run runs a consumer's pipeline: r into dst.
func run(ctx context.Context, r *Reader, dst pipeline.Target) error {
	return pipeline.New(r, dst, pipeline.Options{Logger: r.log}).Run(ctx, nil)
}

// runReader runs r's pipeline into dst until the returned stop is called;
// stop returns Run's error.
func runReader(t *testing.T, r *Reader, dst pipeline.Target) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- run(ctx, r, dst) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err = <-ch
			stopped = true
			r.Close() // as the application does once the pipeline stopped
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
