// Command kinesis measures sluice's Kinesis sink against a bare
// aws-sdk-go-v2 PutRecords loop, in the same process, on the same records,
// into the same local kinesalite server, so the ratio holds on a noisy
// machine:
//
//   - baseline: the records pre-encoded, put in calls of 500, one call after
//     another, nothing else (no encoding, no ordering rules, no state file);
//   - sink: the same changes through Sink.Apply in pipeline-sized batches
//     (encoding, partition keys, limits, lanes, retries, state file), at
//     concurrency 1 (the baseline's shape) and at the default 4;
//   - read: the last stream read back by a bare GetRecords loop and by the
//     Reader (decoding, interning, batching, marks) through a pipeline into
//     a counting target.
//
// Each run gets a fresh stream; runs alternate and repeat, and the best of
// each is reported (the least disturbed by other work on the machine).
//
// Usage: go run ./bench/kinesis [-changes N] [-shards N] [-batch N] [-repeat N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	sk "github.com/sluice-dev/sluice/internal/stream/kinesis"
	"github.com/sluice-dev/sluice/internal/testenv"
)

func main() {
	n := flag.Int("changes", 60_000, "changes per run")
	shards := flag.Int("shards", 4, "shards of each stream")
	batch := flag.Int("batch", 10_000, "changes per Sink.Apply (the pipeline's batch)")
	repeat := flag.Int("repeat", 3, "runs of each kind")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process to the file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *n, *shards, *batch, *repeat); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

var table = &change.Table{
	Schema: "public", Name: "orders", Version: 1,
	Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Key: true},
		{Name: "customer", Type: change.Type{Name: "integer", Kind: change.KindInt}},
		{Name: "name", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
		{Name: "amount", Type: change.Type{Name: "numeric(12,2)", Kind: change.KindNumeric}},
		{Name: "created", Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}},
		{Name: "paid", Type: change.Type{Name: "boolean", Kind: change.KindBool}},
		{Name: "weight", Type: change.Type{Name: "double precision", Kind: change.KindFloat}},
	},
	Key: []int{0},
}

func makeChanges(n int) []change.Change {
	out := make([]change.Change, n)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		id := strconv.Itoa(i%(n/3+1) + 1) // about three changes per key
		out[i] = change.Change{
			Op: change.OpUpdate, Table: table, TxID: uint32(i),
			Pos:        change.Position{CommitLSN: change.LSN(i + 1), LSN: change.LSN(i + 1)},
			CommitTime: t0.Add(time.Duration(i) * time.Millisecond),
			After: []change.Value{
				change.V(change.KindInt, id),
				change.V(change.KindInt, strconv.Itoa(i%1000)),
				change.V(change.KindText, "customer name "+id),
				change.V(change.KindNumeric, strconv.Itoa(i)+".25"),
				change.V(change.KindTimestampTZ, t0.Add(time.Duration(i)*time.Second).Format("2006-01-02T15:04:05.000000Z07:00")),
				change.V(change.KindBool, strconv.FormatBool(i%2 == 0)),
				change.V(change.KindFloat, strconv.FormatFloat(float64(i)*0.5, 'g', -1, 64)),
			},
		}
	}
	return out
}

func run(ctx context.Context, n, shards, batch, repeat int) error {
	k, err := testenv.StartKinesalite(ctx)
	if err != nil {
		return err
	}
	defer k.Stop()
	dir, err := os.MkdirTemp("", "sluice-bench-kinesis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	changes := makeChanges(n)
	// The baseline's records: exactly what the sink puts (same bytes, same
	// partition keys), encoded before the clock starts.
	meta := change.RecordMeta{Pipeline: "bench", Database: "app", Emitted: time.Now()}
	recs := make([]types.PutRecordsRequestEntry, n)
	bytes := 0
	for i := range changes {
		data := change.AppendRecord(nil, &changes[i], meta)
		pk := "public.orders:" + changes[i].After[0].Text
		recs[i] = types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(pk)}
		bytes += len(data) + len(pk)
	}
	fmt.Printf("# sluice Kinesis sink benchmark (kinesalite 3.3.3), %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("changes per run: %d (%.0f bytes per record on average), shards: %d, sink batch: %d\n\n", n, float64(bytes)/float64(n), shards, batch)

	client := k.Client()
	streams := 0
	newStream := func() (string, error) {
		streams++
		name := fmt.Sprintf("bench-%d", streams)
		return name, k.CreateStream(ctx, name, shards)
	}
	best := map[string]float64{}
	kinds := []string{"baseline", "sink c=1", "sink c=4"}
	for r := 0; r < repeat; r++ {
		for _, kind := range kinds {
			name, err := newStream()
			if err != nil {
				return err
			}
			var rate float64
			switch kind {
			case "baseline":
				rate, err = baseline(ctx, client, name, recs)
			case "sink c=1":
				rate, err = viaSink(ctx, k, name, changes, batch, 1, filepath.Join(dir, name+".state"))
			case "sink c=4":
				rate, err = viaSink(ctx, k, name, changes, batch, 4, filepath.Join(dir, name+".state"))
			}
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			fmt.Printf("run %d  %-9s %8.0f records/s\n", r+1, kind, rate)
			best[kind] = max(best[kind], rate)
		}
	}
	fmt.Printf("\nbest of %d:\n", repeat)
	for _, kind := range kinds {
		fmt.Printf("  %-9s %8.0f records/s  ratio to baseline %.2f\n", kind, best[kind], best[kind]/best["baseline"])
	}

	// Reading back the last stream written: a bare GetRecords loop against
	// the Reader (decoding, interning, batching, marks) into an applier
	// that only counts.
	last := fmt.Sprintf("bench-%d", streams)
	fmt.Printf("\nreading %d records back from a %d-shard stream:\n", n, shards)
	var bestBare, bestReader float64
	for r := 0; r < repeat; r++ {
		bare, err := bareRead(ctx, client, last, n)
		if err != nil {
			return fmt.Errorf("bare read: %w", err)
		}
		rd, err := viaReader(ctx, k, last, n, filepath.Join(dir, fmt.Sprintf("rejects-%d.jsonl", r)))
		if err != nil {
			return fmt.Errorf("reader: %w", err)
		}
		fmt.Printf("run %d  bare GetRecords %8.0f records/s   reader %8.0f records/s\n", r+1, bare, rd)
		bestBare, bestReader = max(bestBare, bare), max(bestReader, rd)
	}
	fmt.Printf("best: bare %.0f, reader %.0f records/s, ratio %.2f\n", bestBare, bestReader, bestReader/bestBare)
	return nil
}

// bareRead reads every shard from its start, one after another, without
// decoding anything.
func bareRead(ctx context.Context, c *kinesis.Client, name string, n int) (float64, error) {
	start := time.Now()
	ls, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		return 0, err
	}
	got := 0
	for _, sh := range ls.Shards {
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(name), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return 0, err
		}
		iter := it.ShardIterator
		for {
			out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				return 0, err
			}
			got += len(out.Records)
			if len(out.Records) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	if got != n {
		return 0, fmt.Errorf("read %d records, want %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// counter is a pipeline target (and the reader's mark store) that only
// counts what it is given.
type counter struct {
	n    atomic.Int64
	done chan struct{}
	want int64
}

func (c *counter) State(context.Context) (map[change.TableID]change.TableState, error) {
	return nil, nil
}

func (c *counter) Reset(context.Context, *change.Table) error { return nil }

func (c *counter) Apply(_ context.Context, b *change.Batch) error {
	if c.n.Add(int64(len(b.Changes))) >= c.want {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
	return nil
}

func (c *counter) StreamMarks(context.Context, string) (map[string]string, error) {
	return map[string]string{}, nil
}

func viaReader(ctx context.Context, k *testenv.Kinesis, name string, n int, rejects string) (float64, error) {
	cfg := k.AWSConfig()
	app := &counter{done: make(chan struct{}), want: int64(n)}
	r, err := sk.NewReader(ctx, sk.ReaderConfig{Connection: sk.Connection{Stream: name, AWS: &cfg}, RejectFile: rejects}, app)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- pipeline.New(r, app, pipeline.Options{}).Run(rctx, nil) }()
	select {
	case <-app.done:
	case err := <-errc:
		cancel()
		return 0, fmt.Errorf("reader stopped early: %v", err)
	}
	d := time.Since(start)
	cancel()
	if err := <-errc; err != nil {
		return 0, err
	}
	if got := app.n.Load(); got != int64(n) {
		return 0, fmt.Errorf("applied %d changes, want %d", got, n)
	}
	return float64(n) / d.Seconds(), nil
}

// baseline is the bare SDK loop: calls of 500 records, one after another,
// retrying a call only if it failed outright (kinesalite does not throttle).
func baseline(ctx context.Context, c *kinesis.Client, name string, recs []types.PutRecordsRequestEntry) (float64, error) {
	start := time.Now()
	for i := 0; i < len(recs); i += 500 {
		out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(name), Records: recs[i:min(i+500, len(recs))]})
		if err != nil {
			return 0, err
		}
		if aws.ToInt32(out.FailedRecordCount) != 0 {
			return 0, fmt.Errorf("%d records failed", *out.FailedRecordCount)
		}
	}
	return float64(len(recs)) / time.Since(start).Seconds(), nil
}

func viaSink(ctx context.Context, k *testenv.Kinesis, name string, changes []change.Change, batch, conc int, state string) (float64, error) {
	cfg := k.AWSConfig()
	s, err := sk.NewSink(ctx, sk.SinkConfig{
		Connection:  sk.Connection{Stream: name, AWS: &cfg},
		Pipeline:    "bench",
		Database:    "app",
		StateFile:   state,
		Concurrency: conc,
	})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	start := time.Now()
	for i := 0; i < len(changes); i += batch {
		if err := s.Apply(ctx, &change.Batch{Changes: changes[i:min(i+batch, len(changes))]}); err != nil {
			return 0, err
		}
	}
	d := time.Since(start)
	if st := s.Stats(); st.Records != int64(len(changes)) {
		return 0, fmt.Errorf("sink reports %d records accepted, want %d", st.Records, len(changes))
	}
	return float64(len(changes)) / d.Seconds(), nil
}
