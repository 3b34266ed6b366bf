package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	core "github.com/sluice-dev/sluice/internal/stream"
)

// MarkStream is the name a topic's marks are stored under in the target:
// "kafka:" and the topic, so that a Kinesis stream of the same name in the
// same target keeps its own marks. A mark's Shard is the partition number,
// its Sequence the offset of the last record applied.
func MarkStream(topic string) string { return "kafka:" + topic }

// ReaderConfig configures a Reader. Connection.Brokers and Topic are required.
type ReaderConfig struct {
	Connection
	// Group, when set, makes the reader a member of that consumer group: the
	// group's members share the partitions. Empty: this reader reads every
	// partition. Either way the offsets that count are the marks stored in
	// the target with the data; the group's committed offsets are written
	// after each apply (for lag tools) but never read.
	Group string
	// RejectFile receives records that are not change records (one JSON
	// line each). Default: sluice-kafka-<topic>.rejects.jsonl.
	RejectFile string
	// StrictRecords stops the reader at the first invalid record instead.
	StrictRecords bool
	// Decode turns a record into changes; an error makes it invalid (see
	// core.Decoder). Default: the record is a sluice change record.
	Decode core.Decoder
	// BatchChanges bounds the records of one poll, so of one batch the
	// reader emits (default 10,000).
	BatchChanges int
	// PartitionRefresh is how often a reader without a group looks for
	// partitions added to the topic (default 30s).
	PartitionRefresh time.Duration
	Logger           *slog.Logger
}

// MarkStore is where the reader finds the stored marks of the topic when
// it starts, and when the group assigns it a partition: the consumer's
// warehouse target.
type MarkStore = core.MarkStore

// Reader is a pipeline.Source that reads a topic: every partition (or,
// with a group, its share of them) from its mark in the MarkStore on, one
// batch per poll, carrying the mark of each partition after the poll's
// records (Batch.Marks), which a warehouse target stores with the data:
// exactly once.
//
// Its Acks are tokens, not positions (pipeline.BatchAcker): the records of
// several partitions are in no one LSN order. Each batch it emits is acked
// with the next number (1, 2, …); Confirm(t) says the target committed the
// batches up to t. A group member polls again only once its poll's batch
// is confirmed: the group cannot move a partition between a poll and the
// end of its apply, so the next owner starts after the marks it stored. A
// member that lost a partition anyway (a missed session timeout) has its
// batch fenced on the stored marks (Below): Fenced leaves that
// partition's records out and reads on after the other member's mark.
type Reader struct {
	cfg    ReaderConfig
	opts   []kgo.Opt
	marks  MarkStore
	log    *slog.Logger
	reject *core.JSONLFile
	tables core.Interner
	decode core.Decoder
	stream string // MarkStream(topic)
	acks   core.Acks[*pollAck]

	mu    sync.Mutex
	parts map[int32]*PartitionStats

	// A member's poll may still be applied after Stream returned (the
	// pipeline finishes the apply in flight): the client leaves the group
	// once it is confirmed, or when Close ends the wait.
	leaving   sync.WaitGroup
	closed    context.Context
	closing   context.CancelFunc
	closeOnce sync.Once
	closeErr  error

	read, applied, rejected, batches atomic.Int64
}

var (
	_ pipeline.BatchAcker = (*Reader)(nil)
	_ pipeline.Fencer     = (*Reader)(nil)
)

// NewReader checks the connection and opens the reject file; it connects
// when it streams. marks is where it finds the stored marks.
func NewReader(ctx context.Context, cfg ReaderConfig, marks MarkStore) (*Reader, error) {
	opts, err := cfg.Connection.options(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.BatchChanges <= 0 {
		cfg.BatchChanges = 10_000
	}
	if cfg.PartitionRefresh <= 0 {
		cfg.PartitionRefresh = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RejectFile == "" {
		cfg.RejectFile = "sluice-kafka-" + cfg.Topic + ".rejects.jsonl"
	}
	log := cfg.Logger.With("topic", cfg.Topic)
	if cfg.Group != "" {
		log = log.With("group", cfg.Group)
	}
	opts = append([]kgo.Opt{
		// A mark past the log's start is data lost to retention before it
		// was applied: stop and say so rather than skip to the start.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.WithLogger(kgoLogger{log}),
	}, opts...)
	r := &Reader{cfg: cfg, opts: opts, marks: marks, log: log, stream: MarkStream(cfg.Topic), parts: map[int32]*PartitionStats{}, decode: cfg.Decode}
	r.closed, r.closing = context.WithCancel(context.Background())
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

// Close releases the reject file. A group member whose last poll was still
// being applied when Stream ended leaves the group now at the latest.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		r.closing()
		r.leaving.Wait()
		r.closeErr = r.reject.Close()
	})
	return r.closeErr
}

// storedOffsets reads the marks of the topic from the target: partition →
// the offset to read next.
func (r *Reader) storedOffsets(ctx context.Context) (map[int32]int64, error) {
	marks, err := r.marks.StreamMarks(ctx, r.stream)
	if err != nil {
		return nil, fmt.Errorf("read the marks of Kafka topic %s from the target: %w", r.cfg.Topic, err)
	}
	out := make(map[int32]int64, len(marks))
	for shard, seq := range marks {
		p, err1 := strconv.ParseInt(shard, 10, 32)
		o, err2 := strconv.ParseInt(seq, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("the target's mark for Kafka topic %s is %q=%q, want a partition number and an offset: was it written by another tool?", r.cfg.Topic, shard, seq)
		}
		out[int32(p)] = o + 1
	}
	return out, nil
}

func startAt(next map[int32]int64, p int32) kgo.Offset {
	if o, ok := next[p]; ok {
		// No epoch: the target's mark knows none, and the client's
		// truncation detection would need one.
		return kgo.NewOffset().At(o).WithEpoch(-1)
	}
	return kgo.NewOffset().AtStart()
}

// Snapshot does nothing: a stream's snapshot rows arrive as its records.
func (r *Reader) Snapshot(context.Context, []*change.Table, pipeline.Emit) error { return nil }

// AcksBatches marks the reader's Acks as tokens (pipeline.BatchAcker).
func (r *Reader) AcksBatches() {}

// Confirm is told that the target committed the batches up to token.
func (r *Reader) Confirm(token change.LSN) {
	for _, pa := range r.acks.Confirm(token) {
		n := 0
		for _, pp := range pa.parts {
			n += len(pp.changes)
			r.partStats(pp.p, func(s *PartitionStats) { s.Applied = pp.last.Offset })
		}
		r.applied.Add(int64(n))
		r.batches.Add(1)
	}
}

// Stream reads the topic from the stored marks and emits a batch per poll
// until ctx ends.
func (r *Reader) Stream(ctx context.Context, emit pipeline.Emit) error {
	admin, err := kgo.NewClient(r.opts...)
	if err != nil {
		return fmt.Errorf("create Kafka client: %w", err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	opts := append([]kgo.Opt{}, r.opts...)
	consumed := map[int32]bool{}
	if r.cfg.Group == "" {
		n, err := topicPartitions(ctx, adm, r.cfg.Topic)
		if err != nil {
			return stopped(ctx, err)
		}
		next, err := r.storedOffsets(ctx)
		if err != nil {
			return err
		}
		ps := map[int32]kgo.Offset{}
		for p := range int32(n) {
			ps[p] = startAt(next, p)
			consumed[p] = true
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.Topic: ps}))
	} else {
		opts = append(opts,
			kgo.ConsumerGroup(r.cfg.Group),
			kgo.ConsumeTopics(r.cfg.Topic),
			// A partition is not revoked between a poll and the end of
			// its apply (AllowRebalance): no partition moves mid-batch, so
			// its next owner starts after the marks this apply stored.
			kgo.BlockRebalanceOnPoll(),
			// Each newly assigned partition starts after its mark in the
			// target, whatever the group committed.
			kgo.AdjustFetchOffsetsFn(func(ctx context.Context, in map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
				next, err := r.storedOffsets(ctx)
				if err != nil {
					return nil, err
				}
				for t, ps := range in {
					for p := range ps {
						ps[p] = startAt(next, p)
					}
					in[t] = ps
				}
				return in, nil
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
				r.log.Warn("partitions lost to the group (a missed heartbeat): their next owner starts from the marks in the target", "partitions", lost[r.cfg.Topic])
			}),
			kgo.AutoCommitMarks(),
		)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("create Kafka consumer: %w", err)
	}
	// Leaving the group at once hands the partitions to the other members
	// without waiting for the session timeout.
	var unsettled *pollAck
	defer func() { r.leave(cl, unsettled) }()
	if r.cfg.Group == "" {
		go r.watchPartitions(ctx, adm, cl, consumed)
	}
	for {
		fs := cl.PollRecords(ctx, r.cfg.BatchChanges)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		pa, err := r.handle(ctx, emit, fs)
		if err == nil && pa != nil && r.cfg.Group != "" {
			if err = r.settle(ctx, cl, pa); err != nil && ctx.Err() != nil {
				unsettled = pa // its apply may be in flight: no rebalance yet
				return nil
			}
		}
		cl.AllowRebalance()
		if err != nil {
			return stopped(ctx, err)
		}
	}
}

// leave closes the client, leaving the group; with a poll whose batch the
// pipeline may still be applying, only once it is confirmed (or Close is
// called: the pipeline has stopped, nothing more will be), so that its
// partitions move only after the marks it stores.
func (r *Reader) leave(cl *kgo.Client, unsettled *pollAck) {
	if unsettled == nil {
		cl.CloseAllowingRebalance()
		return
	}
	r.leaving.Add(1)
	go func() {
		defer r.leaving.Done()
		if r.acks.Wait(r.closed, unsettled.token) == nil {
			for _, pp := range unsettled.parts {
				cl.MarkCommitRecords(pp.last)
			}
		}
		cl.CloseAllowingRebalance()
	}()
}

// settle waits until the target committed a group member's poll, then
// re-seeks what Fenced left out and commits the offsets (for lag tools),
// before the group may rebalance again.
func (r *Reader) settle(ctx context.Context, cl *kgo.Client, pa *pollAck) error {
	if err := r.acks.Wait(ctx, pa.token); err != nil {
		return err
	}
	if len(pa.seek) > 0 {
		cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.cfg.Topic: pa.seek})
	}
	for _, pp := range pa.parts {
		cl.MarkCommitRecords(pp.last)
	}
	return nil
}

// pollAck is what one emitted batch covers: a poll's records, by
// partition, less the partitions Fenced left out (to read again from seek).
type pollAck struct {
	token change.LSN
	parts []*polled
	seek  map[int32]kgo.EpochOffset
}

// handle emits one poll: its changes and the marks after them, to be
// applied in one target transaction. It returns what the batch covers, or
// nil when the poll had no records.
func (r *Reader) handle(ctx context.Context, emit pipeline.Emit, fs kgo.Fetches) (*pollAck, error) {
	var fatal error
	fs.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, kgo.ErrClientClosed):
		case errors.Is(err, kerr.OffsetOutOfRange):
			fatal = fmt.Errorf("partition %d of Kafka topic %s no longer holds the offset after the target's mark: "+
				"records were deleted (retention) before they were applied, and the target misses them; raise the topic's retention.ms, "+
				"and snapshot again (sluice teardown of the producer's state, or delete its state file) to repair the target: %w", p, topic, err)
		case isFatal(err):
			fatal = fmt.Errorf("read partition %d of Kafka topic %s: %w", p, topic, explain(err, topic))
		default:
			r.log.Warn("reading a partition failed; the client retries", "partition", p, "error", err)
		}
	})
	if fatal != nil {
		return nil, fatal
	}
	var parts []*polled
	var rejects []any
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 || fatal != nil {
			return
		}
		pp := &polled{p: fp.Partition, first: fp.Records[0], last: fp.Records[len(fp.Records)-1]}
		shard := strconv.Itoa(int(fp.Partition))
		nRejects := 0
		for _, rec := range fp.Records {
			n := len(pp.changes)
			var err error
			pp.changes, err = r.decode(pp.changes, core.ReadRecord{Data: rec.Value, Stream: rec.Topic, Shard: shard,
				Sequence: strconv.FormatInt(rec.Offset, 10), Arrival: rec.Timestamp})
			if err != nil {
				pp.changes = pp.changes[:n]
				if r.cfg.StrictRecords {
					fatal = fmt.Errorf("the record at offset %d of partition %d of Kafka topic %s is not a change record (%v): fix its producer, or turn strict records off to set such records aside in a reject file and go on",
						rec.Offset, rec.Partition, rec.Topic, err)
					return
				}
				rejects = append(rejects, rejectLine{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: string(rec.Key),
					Timestamp: rec.Timestamp, Error: err.Error(), Data: rec.Value})
				nRejects++
			}
		}
		parts = append(parts, pp)
		lr, hw := pp.last, fp.HighWatermark
		r.partStats(fp.Partition, func(s *PartitionStats) {
			s.Records += int64(len(fp.Records))
			s.Rejected += int64(nRejects)
			s.Offset = lr.Offset
			s.HighWatermark = hw
		})
		r.read.Add(int64(len(fp.Records)))
	})
	if fatal != nil {
		return nil, fatal
	}
	if len(parts) == 0 {
		return nil, nil
	}
	if len(rejects) > 0 {
		// On disk before the mark that skips them is stored.
		if err := r.reject.Append(rejects...); err != nil {
			return nil, fmt.Errorf("set aside invalid records of Kafka topic %s: %w", r.cfg.Topic, err)
		}
		r.rejected.Add(int64(len(rejects)))
		r.log.Warn("records that could not be decoded set aside (the reject file says why)", "count", len(rejects), "file", r.cfg.RejectFile)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].p < parts[j].p })
	pa := &pollAck{parts: parts}
	b := r.batch(pa)
	if err := r.acks.Emit(ctx, emit, b, pa); err != nil {
		return nil, err
	}
	pa.token = b.Ack
	return pa, nil
}

// batch is the batch of the polls' records: their changes and each
// partition's mark after them, fenced in a group (see core.Mark.Below: a
// member that lost the partition must not apply what its new owner
// applied).
func (r *Reader) batch(polls ...*pollAck) *change.Batch {
	b := &change.Batch{}
	for _, pa := range polls {
		for _, pp := range pa.parts {
			b.Changes = append(b.Changes, pp.changes...)
			m := core.Mark{Stream: r.stream, Shard: strconv.Itoa(int(pp.p)), Sequence: strconv.FormatInt(pp.last.Offset, 10)}
			if r.cfg.Group != "" {
				m.Below = strconv.FormatInt(pp.first.Offset, 10)
			}
			b.AddMark(m)
		}
	}
	return b
}

// Fenced is handed a batch the target refused because another group
// member applied one of its partitions past this poll's first record (it
// was assigned there while this member's apply waited): it returns the
// batch without that partition's records, which are dropped here, and
// reading goes on after that member's mark (pipeline.Fencer).
func (r *Reader) Fenced(b *change.Batch, err error) *change.Batch {
	polls := r.acks.Pending(b.Ack)
	var fe *core.FenceError
	p, stored := int64(-1), int64(-1)
	if errors.As(err, &fe) && fe.Stream == r.stream {
		p, _ = strconv.ParseInt(fe.Shard, 10, 32)
		stored, _ = strconv.ParseInt(fe.Stored, 10, 64)
		r.log.Warn("another group member applied this partition's records (it was assigned there while this member's apply waited): they are dropped here, and reading goes on after its mark",
			"partition", p, "mark", fe.Stored, "first_offset", fe.Below)
	} else {
		r.log.Error("a batch refused as fenced names no partition of this topic: it is dropped and its records are read again", "error", err)
	}
	for _, pa := range polls {
		keep := pa.parts[:0]
		for _, pp := range pa.parts {
			switch {
			case p < 0:
				pa.seekTo(pp.p, pp.first.Offset)
			case pp.p == int32(p):
				pa.seekTo(pp.p, stored+1)
			default:
				keep = append(keep, pp)
			}
		}
		pa.parts = keep
	}
	out := r.batch(polls...)
	out.Ack = b.Ack
	return out
}

func (pa *pollAck) seekTo(p int32, offset int64) {
	if pa.seek == nil {
		pa.seek = map[int32]kgo.EpochOffset{}
	}
	pa.seek[p] = kgo.EpochOffset{Epoch: -1, Offset: offset}
}

// polled is one partition's records of a poll.
type polled struct {
	p           int32
	first, last *kgo.Record
	changes     []change.Change
}

// isFatal tells the errors that retrying cannot fix: authorization and
// authentication, and a topic that is gone.
func isFatal(err error) bool {
	for _, e := range []error{kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.InvalidTopicException} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ke *kerr.Error
	return errors.As(err, &ke) && !ke.Retriable && !errors.Is(err, kerr.UnknownTopicOrPartition)
}

// watchPartitions adds partitions added to the topic, read from their start
// (or a mark the target holds for them).
func (r *Reader) watchPartitions(ctx context.Context, adm *kadm.Client, cl *kgo.Client, consumed map[int32]bool) {
	t := time.NewTicker(r.cfg.PartitionRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := topicPartitions(ctx, adm, r.cfg.Topic)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("look for new partitions", "error", err)
			}
			continue
		}
		if int(n) <= len(consumed) {
			continue
		}
		next, err := r.storedOffsets(ctx)
		if err != nil {
			continue
		}
		add := map[int32]kgo.Offset{}
		for p := range int32(n) {
			if !consumed[p] {
				add[p] = startAt(next, p)
				consumed[p] = true
			}
		}
		r.log.Info("reading partitions added to the topic", "partitions", len(add))
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.Topic: add})
	}
}

func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// rejectLine is one line of the reject file.
type rejectLine struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Key       string    `json:"key"`
	Timestamp time.Time `json:"timestamp"`
	Error     string    `json:"error"`
	Data      []byte    `json:"data"` // base64
}

// PartitionStats is what the reader knows of one partition.
type PartitionStats struct {
	Records  int64 `json:"records"`
	Rejected int64 `json:"rejected"`
	// Offset is the last record read, Applied the last applied.
	Offset  int64 `json:"offset"`
	Applied int64 `json:"applied"`
	// HighWatermark is the partition's end as of the last fetch; Lag the
	// records between it and the last applied one: the partition's lag.
	HighWatermark int64 `json:"high_watermark"`
	Lag           int64 `json:"lag"`
}

// ReaderStats is what the reader reports for status output.
type ReaderStats struct {
	Topic      string                    `json:"topic"`
	Group      string                    `json:"group,omitempty"`
	Read       int64                     `json:"records_read"`
	Applied    int64                     `json:"changes_applied"`
	Rejected   int64                     `json:"records_rejected"`
	Batches    int64                     `json:"batches"`
	Partitions map[string]PartitionStats `json:"partitions"`
	// MaxLag is the largest lag over the partitions being read.
	MaxLag int64 `json:"max_lag"`
}

func (r *Reader) partStats(p int32, f func(*PartitionStats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.parts[p]
	if s == nil {
		s = &PartitionStats{Offset: -1, Applied: -1}
		r.parts[p] = s
	}
	f(s)
	s.Lag = max(s.HighWatermark-(s.Applied+1), 0)
}

// Stats returns the reader's counters and each partition's lag.
func (r *Reader) Stats() ReaderStats {
	st := ReaderStats{Topic: r.cfg.Topic, Group: r.cfg.Group, Read: r.read.Load(), Applied: r.applied.Load(), Rejected: r.rejected.Load(),
		Batches: r.batches.Load(), Partitions: map[string]PartitionStats{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, s := range r.parts {
		st.Partitions[strconv.Itoa(int(p))] = *s
		st.MaxLag = max(st.MaxLag, s.Lag)
	}
	return st
}
