package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	core "github.com/sluice-dev/sluice/internal/stream"
)

// StreamMark is a reader's checkpoint for one shard: the sequence number of
// the last record applied (or ShardEnd), stored by the Applier in the same
// transaction as the data. Stream is the stream's name, also when the
// reader addresses it by ARN.
type StreamMark = core.Mark

// ShardEnd is the Sequence of a mark that says the shard is closed and was
// read to its end: its children may be read, it never needs reading again.
const ShardEnd = "SHARD_END"

// MarkStore is where the reader finds the stored marks of the stream when
// it starts (shard id → sequence): the consumer's warehouse target.
type MarkStore = core.MarkStore

// ReaderConfig configures a Reader. Only Connection.Stream is required.
type ReaderConfig struct {
	Connection
	// RejectFile receives records that are not change records (one JSON
	// line each: stream, shard, sequence, error, data as base64). Default:
	// sluice-kinesis-<stream>.rejects.jsonl in the working directory.
	RejectFile string
	// StrictRecords stops the reader at the first invalid record instead.
	StrictRecords bool
	// Decode turns a record into changes; an error makes it invalid (see
	// core.Decoder). Default: the record is a sluice change record.
	Decode core.Decoder
	// PollInterval is the pause after a read that found a shard caught up
	// (default 500ms).
	PollInterval time.Duration
	// ReadInterval is the least time between two reads of one shard while
	// it is behind (default 200ms: Kinesis allows 5 GetRecords a second per
	// shard, and a shard serves at most 2 MB/s anyway).
	ReadInterval time.Duration
	// ShardRefresh is how often the shard list is read again to find new
	// shards (default 30s; a shard that ends triggers a refresh at once).
	ShardRefresh time.Duration
	// RecordsPerCall is GetRecords' Limit (default and maximum 10,000).
	RecordsPerCall int32
	// BatchChanges bounds the changes of one batch the reader emits
	// (default 10,000): a read of more is cut into several batches. The
	// pipeline merges batches that queued up while the target applied, up
	// to its own ApplyChanges.
	BatchChanges int
	// BaseBackoff and MaxBackoff bound retries of throttled or failed reads
	// (defaults 200ms and 10s).
	BaseBackoff, MaxBackoff time.Duration
	Logger                  *slog.Logger
}

// getAPI is the part of the Kinesis client the reader uses.
type getAPI interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// Reader is a pipeline.Source that reads a stream: every shard from its
// mark in the MarkStore on (or the trim horizon), each batch it emits
// carrying the mark of the shard after its records (Batch.Marks), which a
// warehouse target stores with the data: exactly once.
//
// Its Acks are tokens, not positions (pipeline.BatchAcker): the records of
// several shards are in no one LSN order. Each batch it emits is acked with
// the next number (1, 2, …); Confirm(t) says the target committed the
// batches up to t, and moves each shard's applied mark in Stats.
type Reader struct {
	cfg    ReaderConfig
	api    getAPI
	stream streamRef
	marks  MarkStore
	log    *slog.Logger
	reject *core.JSONLFile
	tables core.Interner
	decode core.Decoder
	acks   core.Acks[shardAck]

	mu     sync.Mutex
	shards map[string]*ShardStats

	read, applied, rejected, batches atomic.Int64
}

// shardAck is what one emitted batch covers: its shard's mark and changes.
type shardAck struct {
	mark    StreamMark
	changes int
}

var _ pipeline.BatchAcker = (*Reader)(nil)

// NewReader connects to Kinesis (no call is made yet) and opens the reject
// file; marks is where Stream finds the stored marks.
func NewReader(ctx context.Context, cfg ReaderConfig, marks MarkStore) (*Reader, error) {
	c, st, err := cfg.Connection.client(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.ReadInterval <= 0 {
		cfg.ReadInterval = 200 * time.Millisecond
	}
	if cfg.ShardRefresh <= 0 {
		cfg.ShardRefresh = 30 * time.Second
	}
	if cfg.RecordsPerCall <= 0 || cfg.RecordsPerCall > 10_000 {
		cfg.RecordsPerCall = 10_000
	}
	if cfg.BatchChanges <= 0 {
		cfg.BatchChanges = 10_000
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.BaseBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RejectFile == "" {
		cfg.RejectFile = "sluice-kinesis-" + st.name + ".rejects.jsonl"
	}
	r := &Reader{cfg: cfg, api: c, stream: st, marks: marks, log: cfg.Logger.With("stream", st.name), shards: map[string]*ShardStats{}, decode: cfg.Decode}
	if r.decode == nil {
		r.decode = r.tables.DecodeRecord
	}
	if !cfg.StrictRecords {
		if r.reject, err = core.OpenJSONL(cfg.RejectFile); err != nil {
			return nil, fmt.Errorf("open reject file: %w", err)
		}
	}
	return r, nil
}

// Close releases the reject file.
func (r *Reader) Close() error { return r.reject.Close() }

// Snapshot does nothing: a stream's snapshot rows arrive as its records.
func (r *Reader) Snapshot(context.Context, []*change.Table, pipeline.Emit) error { return nil }

// AcksBatches marks the reader's Acks as tokens (pipeline.BatchAcker).
func (r *Reader) AcksBatches() {}

// Confirm is told that the target committed the batches up to token.
func (r *Reader) Confirm(token change.LSN) {
	for _, a := range r.acks.Confirm(token) {
		r.applied.Add(int64(a.changes))
		r.batches.Add(1)
		r.shardStats(a.mark.Shard, func(s *ShardStats) { s.Applied = a.mark.Sequence })
	}
}

// Stream reads every shard from its stored mark (or the trim horizon) and
// emits what it reads until ctx ends. A child shard is read only after its
// parents were read to their end (their last batch emitted), so the
// changes of a key that moved with a reshard are applied in order. Memory:
// each shard reader holds one GetRecords response (at most 10 MiB and
// RecordsPerCall records) while the pipeline's queue is full.
func (r *Reader) Stream(ctx context.Context, emit pipeline.Emit) error {
	marks, err := r.marks.StreamMarks(ctx, r.stream.name)
	if err != nil {
		return fmt.Errorf("read the stream marks of %s from the target: %w", r.stream.name, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.coordinate(gctx, g, marks, emit) })
	err = g.Wait()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// coordinate lists the shards and starts a reader for each one whose
// parents are drained, again whenever a shard ends or ShardRefresh passes.
func (r *Reader) coordinate(ctx context.Context, g *errgroup.Group, marks map[string]string, emit pipeline.Emit) error {
	done := map[string]bool{}
	for id, seq := range marks {
		if seq == ShardEnd {
			done[id] = true
		}
	}
	started := map[string]bool{}
	finished := make(chan string, 64)
	tick := time.NewTicker(r.cfg.ShardRefresh)
	defer tick.Stop()
	for {
		shards, err := r.listShards(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		listed := make(map[string]bool, len(shards))
		for _, sh := range shards {
			listed[aws.ToString(sh.ShardId)] = true
		}
		for _, sh := range shards {
			id := aws.ToString(sh.ShardId)
			if started[id] || done[id] {
				continue
			}
			ready := true
			for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
				// A parent gone from the list has passed the retention
				// period: nothing of it is left to read first.
				if p != nil && listed[*p] && !done[*p] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			started[id] = true
			r.shardStats(id, func(s *ShardStats) {})
			from := marks[id]
			g.Go(func() error {
				err := r.readShard(ctx, id, from, emit)
				if err == nil {
					select {
					case finished <- id:
					case <-ctx.Done():
					}
				}
				return err
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case id := <-finished:
			done[id] = true
		case <-tick.C:
		}
	}
}

func (r *Reader) listShards(ctx context.Context) ([]types.Shard, error) {
	var out []types.Shard
	name, arn := r.stream.ids()
	in := &kinesis.ListShardsInput{StreamName: name, StreamARN: arn}
	for attempt := 1; ; {
		res, err := r.api.ListShards(ctx, in, noSDKRetries)
		if err != nil {
			if _, retry := classify(err); retry && ctx.Err() == nil {
				if err := r.sleep(ctx, attempt); err != nil {
					return nil, err
				}
				attempt++
				continue
			}
			return nil, fmt.Errorf("list shards of Kinesis stream %s: %w", r.stream, explainRead(err, r.stream))
		}
		out = append(out, res.Shards...)
		if res.NextToken == nil {
			return out, nil
		}
		// With a NextToken the stream must not be named again.
		in = &kinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

// readShard reads one shard from after seq (or its start) until it ends
// (nil) or ctx ends (ctx's error).
func (r *Reader) readShard(ctx context.Context, shard, seq string, emit pipeline.Emit) error {
	log := r.log.With("shard", shard)
	iter, err := r.iterator(ctx, shard, seq)
	if err != nil {
		return err
	}
	_, arn := r.stream.ids()
	attempt := 1
	var last time.Time
	for {
		if wait := r.cfg.ReadInterval - time.Since(last); wait > 0 {
			if err := core.SleepCtx(ctx, wait); err != nil {
				return err
			}
		}
		last = time.Now()
		res, err := r.api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(r.cfg.RecordsPerCall), StreamARN: arn}, noSDKRetries)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var expired *types.ExpiredIteratorException
			if errors.As(err, &expired) {
				// Iterators live 5 minutes: take a new one where we are.
				if iter, err = r.iterator(ctx, shard, seq); err != nil {
					return err
				}
				continue
			}
			throttled, retry := classify(err)
			if !retry {
				return fmt.Errorf("read shard %s of Kinesis stream %s: %w", shard, r.stream, explainRead(err, r.stream))
			}
			if throttled {
				r.shardStats(shard, func(s *ShardStats) { s.Throttles++ })
			}
			if attempt%10 == 0 {
				log.Warn("reading the shard keeps failing; retrying", "attempts", attempt, "error", err)
			}
			if err := r.sleep(ctx, attempt); err != nil {
				return err
			}
			attempt++
			continue
		}
		attempt = 1
		var (
			changes []change.Change
			rejects []any
			nReject int
		)
		// flush emits the changes decoded so far with the shard's mark at
		// seq, after the records set aside on the way are on disk.
		flush := func(seq string) error {
			if len(rejects) > 0 {
				if err := r.reject.Append(rejects...); err != nil {
					return fmt.Errorf("set aside invalid records of shard %s: %w", shard, err)
				}
				r.rejected.Add(int64(len(rejects)))
				log.Warn("records that could not be decoded set aside (the reject file says why)", "count", len(rejects), "file", r.cfg.RejectFile)
				rejects = nil
			}
			m := StreamMark{Stream: r.stream.name, Shard: shard, Sequence: seq}
			b := &change.Batch{Changes: changes, Marks: []StreamMark{m}}
			changes = nil // the batch owns them now
			return r.acks.Emit(ctx, emit, b, shardAck{mark: m, changes: len(b.Changes)})
		}
		for i := range res.Records {
			rec := &res.Records[i]
			s := aws.ToString(rec.SequenceNumber)
			n := len(changes)
			var err error
			changes, err = r.decode(changes, core.ReadRecord{Data: rec.Data, Stream: r.stream.name, Shard: shard, Sequence: s, Arrival: aws.ToTime(rec.ApproximateArrivalTimestamp)})
			if err != nil {
				changes = changes[:n]
				if r.cfg.StrictRecords {
					return fmt.Errorf("record %s in shard %s of Kinesis stream %s is not a change record (%v): fix its producer, or turn strict records off to set such records aside in a reject file and go on",
						s, shard, r.stream.name, err)
				}
				rejects = append(rejects, rejectLine{Stream: r.stream.name, Shard: shard, Sequence: s, PartitionKey: aws.ToString(rec.PartitionKey),
					Arrival: aws.ToTime(rec.ApproximateArrivalTimestamp), Error: err.Error(), Data: rec.Data})
				nReject++
				continue
			}
			if len(changes) >= r.cfg.BatchChanges && i < len(res.Records)-1 {
				if err := flush(s); err != nil {
					return err
				}
			}
		}
		if n := len(res.Records); n > 0 {
			seq = aws.ToString(res.Records[n-1].SequenceNumber)
		}
		r.read.Add(int64(len(res.Records)))
		behind := aws.ToInt64(res.MillisBehindLatest)
		ended := res.NextShardIterator == nil
		r.shardStats(shard, func(s *ShardStats) {
			s.MillisBehindLatest = behind
			s.Records += int64(len(res.Records))
			s.Rejected += int64(nReject)
			if seq != "" {
				s.Sequence = seq
			}
			s.Ended = ended
		})
		if len(res.Records) > 0 || ended {
			last := seq
			if ended {
				last = ShardEnd
			}
			if err := flush(last); err != nil {
				return err
			}
		}
		if ended {
			log.Info("shard read to its end")
			return nil
		}
		iter = res.NextShardIterator
		// Caught up: nothing came, or less than a full read and Kinesis
		// says nothing is behind (some Kinesis-compatible servers always
		// say 0, so a full read alone means there may be more).
		if len(res.Records) == 0 || (behind == 0 && len(res.Records) < int(r.cfg.RecordsPerCall)) {
			if err := core.SleepCtx(ctx, r.cfg.PollInterval); err != nil {
				return err
			}
		}
	}
}

// noSDKRetries turns the SDK's own retries off for one call: the reader
// retries by itself, with its configured backoff, counting throttles.
func noSDKRetries(o *kinesis.Options) { o.RetryMaxAttempts = 1 }

func (r *Reader) iterator(ctx context.Context, shard, seq string) (*string, error) {
	name, arn := r.stream.ids()
	in := &kinesis.GetShardIteratorInput{StreamName: name, StreamARN: arn, ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
	if seq != "" {
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(seq)
	}
	for attempt := 1; ; attempt++ {
		res, err := r.api.GetShardIterator(ctx, in, noSDKRetries)
		if err == nil {
			return res.ShardIterator, nil
		}
		if _, retry := classify(err); !retry || ctx.Err() != nil {
			return nil, fmt.Errorf("start reading shard %s of Kinesis stream %s after %q: %w", shard, r.stream, seq, explainRead(err, r.stream))
		}
		if err := r.sleep(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

func (r *Reader) sleep(ctx context.Context, attempt int) error {
	return core.Backoff{Base: r.cfg.BaseBackoff, Max: r.cfg.MaxBackoff}.Wait(ctx, attempt)
}

func explainRead(err error, st streamRef) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException" {
		return fmt.Errorf("the AWS identity may not read stream %s (grant kinesis:ListShards, kinesis:GetShardIterator and kinesis:GetRecords on the stream's ARN): %w", st, err)
	}
	return explain(err, st)
}

// rejectLine is one line of the reject file.
type rejectLine struct {
	Stream       string    `json:"stream"`
	Shard        string    `json:"shard"`
	Sequence     string    `json:"sequence"`
	PartitionKey string    `json:"partition_key"`
	Arrival      time.Time `json:"arrival"`
	Error        string    `json:"error"`
	Data         []byte    `json:"data"` // base64
}

// ShardStats is what the reader knows of one shard.
type ShardStats struct {
	// MillisBehindLatest is how far the last read was behind the shard's
	// newest record, as Kinesis reports it: the shard's lag.
	MillisBehindLatest int64  `json:"millis_behind_latest"`
	Records            int64  `json:"records"`
	Rejected           int64  `json:"rejected"`
	Sequence           string `json:"sequence"` // last read
	Applied            string `json:"applied"`  // last mark applied
	Ended              bool   `json:"ended"`    // closed and read to its end
	Throttles          int64  `json:"throttles"`
}

// ReaderStats is what the reader reports for status output.
type ReaderStats struct {
	Stream   string                `json:"stream"`
	Read     int64                 `json:"records_read"`
	Applied  int64                 `json:"changes_applied"`
	Rejected int64                 `json:"records_rejected"`
	Batches  int64                 `json:"batches"`
	Shards   map[string]ShardStats `json:"shards"`
	// MaxMillisBehind is the largest lag over the shards being read.
	MaxMillisBehind int64 `json:"max_millis_behind"`
}

func (r *Reader) shardStats(id string, f func(*ShardStats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.shards[id]
	if s == nil {
		s = &ShardStats{}
		r.shards[id] = s
	}
	f(s)
}

// Stats returns the reader's counters and each shard's lag.
func (r *Reader) Stats() ReaderStats {
	st := ReaderStats{Stream: r.stream.name, Read: r.read.Load(), Applied: r.applied.Load(), Rejected: r.rejected.Load(),
		Batches: r.batches.Load(), Shards: map[string]ShardStats{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.shards))
	for id := range r.shards {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := *r.shards[id]
		st.Shards[id] = s
		if !s.Ended && s.MillisBehindLatest > st.MaxMillisBehind {
			st.MaxMillisBehind = s.MillisBehindLatest
		}
	}
	return st
}
