package kinesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	core "github.com/sluice-dev/sluice/internal/stream"
)

// Kinesis' PutRecords limits.
const (
	MaxRecordsPerCall = 500
	MaxBytesPerCall   = 5 << 20 // data and partition keys of all records
	MaxRecordBytes    = 1 << 20 // data and partition key of one record
)

// SinkConfig configures a Sink. Only Connection.Stream is required.
type SinkConfig struct {
	Connection
	// Pipeline and Database go into every record's source.name and source.db.
	Pipeline string
	Database string
	// StateFile holds the per-table state (snapshotted, last position put on
	// the stream). Default: sluice-kinesis-<stream>.state.json in the working
	// directory. Each stream needs its own.
	StateFile string
	// DeadLetterFile, when set, receives records over Kinesis' 1 MiB limit
	// (one JSON line each: table, key, position, size, record) instead of
	// stopping the pipeline.
	DeadLetterFile string
	// Refuse, when set, is asked about every encoded record; a non-empty
	// answer (the reason) refuses it like a record over the size limit: set
	// aside in the dead-letter file, or Apply fails with a
	// RecordRefusedError. For consumers with limits of their own, such as
	// Redshift's JSON_PARSE (warehouse/redshift.RefuseRecord).
	Refuse func(c *change.Change, record []byte) string
	// Concurrency is how many PutRecords calls may be in flight at once
	// (default 4). Keys are spread over that many lanes; one key's records
	// always travel in one lane, one call after another.
	Concurrency int
	// BaseBackoff and MaxBackoff bound the exponential backoff with full
	// jitter between retries (defaults 100ms and 5s).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// MaxAttempts gives up on a call or a record after that many attempts;
	// 0 retries until the context ends (back-pressure: a throttled stream
	// slows the pipeline, nothing is dropped).
	MaxAttempts int
	// Logger receives warnings about throttling; default slog.Default().
	Logger *slog.Logger
	// Now stamps records' ts_ms; default time.Now.
	Now func() time.Time
}

// putAPI is the part of the Kinesis client the sink uses.
type putAPI interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

// Sink puts change records on a Kinesis stream. It is a pipeline.Target.
// What every stream needs (records, partition keys, replay skip, the state
// file, dead letters) is its stream.Producer's; the sink moves the records.
type Sink struct {
	cfg    SinkConfig
	api    putAPI
	stream streamRef
	log    *slog.Logger
	prod   *core.Producer

	stats sinkCounters
}

var _ pipeline.Target = (*Sink)(nil)

// NewSink connects to Kinesis (no call is made yet) and loads the state file.
func NewSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	c, st, err := cfg.Connection.client(ctx)
	if err != nil {
		return nil, err
	}
	return newSink(cfg, c, st)
}

func newSink(cfg SinkConfig, api putAPI, st streamRef) (*Sink, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateFile == "" {
		cfg.StateFile = "sluice-kinesis-" + st.name + ".state.json"
	}
	log := cfg.Logger.With("stream", st.name)
	prod, err := core.NewProducer(core.ProducerConfig{
		Transport: "Kinesis", Stream: st.name, Pipeline: cfg.Pipeline, Database: cfg.Database,
		StateFile: cfg.StateFile, DeadLetterFile: cfg.DeadLetterFile, DeadLetterKey: "stream.kinesis.dead_letter_file",
		MaxRecordBytes: MaxRecordBytes, Refuse: cfg.Refuse, Logger: log, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, api: api, stream: st, log: log, prod: prod}, nil
}

// Close releases the dead-letter file.
func (s *Sink) Close() error { return s.prod.Close() }

// State reports what the state file says about each table.
func (s *Sink) State(ctx context.Context) (map[change.TableID]change.TableState, error) {
	return s.prod.State(ctx)
}

// Reset forgets a table's state before its (re)snapshot.
func (s *Sink) Reset(ctx context.Context, t *change.Table) error { return s.prod.Reset(ctx, t) }

// shardHashKeys returns a hash key inside each open shard, so a record can
// be put on every shard: truncates travel that way, since a consumer reads
// shards independently and each shard must carry the truncate before the
// records that follow it.
func (s *Sink) shardHashKeys(ctx context.Context) ([]string, error) {
	name, arn := s.stream.ids()
	in := &kinesis.ListShardsInput{StreamName: name, StreamARN: arn}
	var keys []string
	for attempt := 1; ; {
		out, err := s.api.ListShards(ctx, in)
		if err != nil {
			// Transient failures are ridden out as PutRecords' are.
			if _, retry := classify(err); retry && ctx.Err() == nil && (s.cfg.MaxAttempts == 0 || attempt < s.cfg.MaxAttempts) {
				if attempt%10 == 0 {
					s.log.Warn("Kinesis keeps refusing ListShards; retrying", "attempts", attempt, "error", err)
				}
				if err := s.sleep(ctx, attempt); err != nil {
					return nil, err
				}
				attempt++
				continue
			}
			return nil, fmt.Errorf("list shards of Kinesis stream %s: %w", s.stream, explain(err, s.stream))
		}
		attempt = 1
		for _, sh := range out.Shards {
			if sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil {
				continue // closed: nothing more can be put on it
			}
			if sh.HashKeyRange != nil {
				keys = append(keys, aws.ToString(sh.HashKeyRange.StartingHashKey))
			}
		}
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("the Kinesis stream %s has no open shard", s.stream)
	}
	return keys, nil
}

// RecordTooLargeError is returned by Apply for a record over Kinesis' 1 MiB
// limit when no dead-letter file is configured. The pipeline stops without
// moving the slot.
type RecordTooLargeError = core.RecordTooLargeError

// RecordRefusedError is returned by Apply for a record SinkConfig.Refuse
// refused when no dead-letter file is configured. The pipeline stops without
// moving the slot.
type RecordRefusedError = core.RecordRefusedError

// entry is one encoded record waiting to be accepted by Kinesis.
type entry struct {
	data     []byte
	pk       string
	hashKey  string // set to put the record on one chosen shard (truncates go to every shard)
	attempts int
}

func (e *entry) size() int { return len(e.data) + len(e.pk) }

// Apply puts every change of the batch on the stream and returns once
// Kinesis accepted all of them; then it records the tables' new state in
// the state file. Changes already on the stream by the state file (a
// replayed batch) are skipped. Apply calls must not overlap (the pipeline
// makes one at a time): their order is the stream's order.
func (s *Sink) Apply(ctx context.Context, b *change.Batch) error {
	start := time.Now()
	plan, err := s.prod.Prepare(b)
	if err != nil {
		return err
	}
	var shardKeys []string // fetched at the first truncate of the batch
	for _, seg := range plan.Segments {
		if seg.Everywhere && shardKeys == nil {
			if shardKeys, err = s.shardHashKeys(ctx); err != nil {
				return err
			}
		}
	}
	// Dead letters reach the disk before the records after them are put:
	// once Apply returns, the slot moves past them.
	if err := s.prod.SetAside(plan); err != nil {
		return err
	}
	var n int
	for _, seg := range plan.Segments {
		lanes := make([][]*entry, s.cfg.Concurrency)
		for _, r := range seg.Records {
			l := core.Spread(r.Key, s.cfg.Concurrency)
			if seg.Everywhere {
				// A truncate goes to every shard: one copy per shard,
				// addressed by a hash key inside it.
				for _, hk := range shardKeys {
					lanes[l] = append(lanes[l], &entry{data: r.Data, pk: r.Key, hashKey: hk})
					n++
				}
				continue
			}
			lanes[l] = append(lanes[l], &entry{data: r.Data, pk: r.Key})
			n++
		}
		if err := s.putLanes(ctx, lanes); err != nil {
			return err
		}
	}
	if err := s.prod.Commit(plan); err != nil {
		return err
	}
	if d := time.Since(start).Seconds(); n > 0 && d > 0 {
		s.stats.rate.Store(uint64(float64(n) / d * 1000))
	}
	return nil
}

func (s *Sink) putLanes(ctx context.Context, lanes [][]*entry) error {
	busy := 0
	for _, l := range lanes {
		if len(l) > 0 {
			busy++
		}
	}
	if busy == 1 {
		for _, l := range lanes {
			if len(l) > 0 {
				return s.putLane(ctx, l)
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range lanes {
		if len(l) == 0 {
			continue
		}
		g.Go(func() error { return s.putLane(gctx, l) })
	}
	return g.Wait()
}

// putLane sends one lane's records in order, in calls within Kinesis'
// limits, until every record is accepted.
//
// Order per key: Kinesis keeps the order of the records of a call that
// reach one shard, but a call can fail for some records and succeed for
// later ones. When a record of key K fails, every later record of K in that
// call is resent too, after it and in order, even where it succeeded: the
// stream then holds a duplicate (harmless: consumers reduce by position),
// and the last copy of each of K's records is in K's order. The resent
// records go first in the next call, before anything not yet sent.
func (s *Sink) putLane(ctx context.Context, queue []*entry) error {
	name, arn := s.stream.ids()
	var inflight int64
	defer func() { s.stats.inflightBytes.Add(-inflight) }()
	attempt := 0 // consecutive calls that made no progress or were throttled
	for len(queue) > 0 {
		n, bytes := 0, 0
		for n < len(queue) && n < MaxRecordsPerCall && bytes+queue[n].size() <= MaxBytesPerCall {
			bytes += queue[n].size()
			n++
		}
		call := queue[:n]
		in := &kinesis.PutRecordsInput{StreamName: name, StreamARN: arn, Records: make([]types.PutRecordsRequestEntry, n)}
		for i, e := range call {
			in.Records[i] = types.PutRecordsRequestEntry{Data: e.data, PartitionKey: aws.String(e.pk)}
			if e.hashKey != "" {
				in.Records[i].ExplicitHashKey = aws.String(e.hashKey)
			}
			e.attempts++
		}
		s.stats.inflightBytes.Add(int64(bytes) - inflight)
		inflight = int64(bytes)
		s.stats.calls.Add(1)
		// The sink retries by itself (it must know which records failed):
		// the SDK's own retries are off for this call.
		out, err := s.api.PutRecords(ctx, in, noSDKRetries)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("put records on Kinesis stream %s: %w", s.stream, ctx.Err())
			}
			throttled, retry := classify(err)
			if !retry {
				return fmt.Errorf("put records on Kinesis stream %s: %w", s.stream, explain(err, s.stream))
			}
			if throttled {
				s.stats.throttles.Add(1)
			}
			s.stats.retries.Add(int64(n))
			attempt++
			if s.cfg.MaxAttempts > 0 && call[0].attempts >= s.cfg.MaxAttempts {
				return fmt.Errorf("put records on Kinesis stream %s: gave up after %d attempts: %w", s.stream, call[0].attempts, err)
			}
			if attempt%10 == 0 {
				s.log.Warn("Kinesis keeps refusing PutRecords; retrying", "attempts", attempt, "error", err)
			}
			if err := s.sleep(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		if out.FailedRecordCount == nil || *out.FailedRecordCount == 0 {
			s.stats.records.Add(int64(n))
			s.stats.bytes.Add(int64(bytes))
			queue = queue[n:]
			attempt = 0
			continue
		}
		if len(out.Records) != n {
			return fmt.Errorf("put records on Kinesis stream %s: the response has %d results for %d records", s.stream, len(out.Records), n)
		}
		failedKeys := map[string]bool{}
		var resend []*entry
		throttled := false
		var firstCode, firstMsg string
		for i, r := range out.Records {
			e := call[i]
			if r.ErrorCode != nil {
				if firstCode == "" {
					firstCode, firstMsg = *r.ErrorCode, aws.ToString(r.ErrorMessage)
				}
				if *r.ErrorCode == "ProvisionedThroughputExceededException" {
					throttled = true
				}
				failedKeys[e.pk] = true
				resend = append(resend, e)
				continue
			}
			if failedKeys[e.pk] {
				resend = append(resend, e) // accepted, but after a failed record of its key
				continue
			}
			s.stats.records.Add(1)
			s.stats.bytes.Add(int64(e.size()))
		}
		if throttled {
			s.stats.throttles.Add(1)
		}
		s.stats.retries.Add(int64(len(resend)))
		if s.cfg.MaxAttempts > 0 {
			for _, e := range resend {
				if e.attempts >= s.cfg.MaxAttempts {
					return fmt.Errorf("put records on Kinesis stream %s: a record of key %s failed %d times, last with %s: %s", s.stream, e.pk, e.attempts, firstCode, firstMsg)
				}
			}
		}
		progress := len(resend) < n
		queue = append(resend, queue[n:]...)
		if progress && !throttled {
			attempt = 0
			continue
		}
		attempt++
		if attempt%10 == 0 {
			s.log.Warn("Kinesis keeps failing records; resending them", "failed", len(resend), "code", firstCode, "message", firstMsg, "attempts", attempt)
		}
		if err := s.sleep(ctx, attempt); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits a random time up to BaseBackoff·2^(attempt-1), capped at
// MaxBackoff ("full jitter": retrying producers spread out instead of
// hitting a throttled shard in step).
func (s *Sink) sleep(ctx context.Context, attempt int) error {
	d := s.cfg.BaseBackoff
	for i := 1; i < attempt && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	d = time.Duration(rand.Int64N(int64(d)) + 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("put records on Kinesis stream %s: %w", s.stream, ctx.Err())
	case <-t.C:
		return nil
	}
}

// classify tells whether a failed call is worth retrying, and whether it
// was throttled.
func classify(err error) (throttled, retryable bool) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
			"RequestLimitExceeded", "TooManyRequestsException", "KMSThrottlingException":
			return true, true
		case "InternalFailure", "ServiceUnavailable", "InternalServerError":
			return false, true
		}
	}
	// The request never got an answer (connection refused, reset, timed
	// out): the SDK reports status 0.
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) {
		return false, true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		if code := re.HTTPStatusCode(); code == 429 || code >= 500 {
			return code == 429, true
		}
	}
	// What the SDK's own retryer retries: connection errors, timeouts,
	// throttling and transient codes it knows.
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary, true
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return false, true
	}
	return false, false
}

// explain adds the fix to the errors a user can fix.
func explain(err error, st streamRef) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.ErrorCode() {
	case "ResourceNotFoundException":
		return fmt.Errorf("stream %s does not exist in this account and region (create it, or check the name/ARN and AWS_REGION): %w", st, err)
	case "AccessDeniedException":
		return fmt.Errorf("the AWS identity may not put records on stream %s (grant kinesis:PutRecords on the stream's ARN): %w", st, err)
	case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException":
		return fmt.Errorf("AWS rejected the credentials (check the credential chain: AWS_PROFILE, AWS_ACCESS_KEY_ID, the role): %w", err)
	}
	return err
}

// sinkCounters are updated by concurrent lanes.
type sinkCounters struct {
	records, bytes, calls, retries, throttles atomic.Int64
	inflightBytes                             atomic.Int64
	rate                                      atomic.Uint64 // records/s ×1000 of the last Apply
}

// SinkStats is what the sink reports for status output.
type SinkStats struct {
	Stream string `json:"stream"`
	// Records and Bytes accepted by Kinesis (data plus partition keys).
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// InFlightBytes are in PutRecords calls now.
	InFlightBytes int64 `json:"in_flight_bytes"`
	// RecordsPerSecond is the rate of the last Apply, calls and retries included.
	RecordsPerSecond float64 `json:"records_per_second"`
	Calls            int64   `json:"calls"`
	// Retries counts records sent again (failed, or behind a failed record of their key).
	Retries int64 `json:"retries"`
	// Throttles counts calls refused or partly failed for throughput.
	Throttles    int64 `json:"throttles"`
	DeadLettered int64 `json:"dead_lettered"`
}

// Stats returns the sink's counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{
		Stream:           s.stream.name,
		Records:          s.stats.records.Load(),
		Bytes:            s.stats.bytes.Load(),
		InFlightBytes:    s.stats.inflightBytes.Load(),
		RecordsPerSecond: float64(s.stats.rate.Load()) / 1000,
		Calls:            s.stats.calls.Load(),
		Retries:          s.stats.retries.Load(),
		Throttles:        s.stats.throttles.Load(),
		DeadLettered:     s.prod.DeadLettered(),
	}
}
