package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	core "github.com/sluice-dev/sluice/internal/stream"
)

// DefaultMaxRecordBytes is the default limit on one record (value plus
// key): under the broker's default message.max.bytes (1,048,588) with room
// for the record batch's own overhead.
const DefaultMaxRecordBytes = 1_000_000

// SinkConfig configures a Sink. Connection.Brokers and Topic are required.
type SinkConfig struct {
	Connection
	// Pipeline and Database go into every record's source.name and source.db.
	Pipeline string
	Database string
	// StateFile holds the per-table state and the pinned partition count.
	// Default: sluice-kafka-<topic>.state.json in the working directory.
	StateFile string
	// DeadLetterFile, when set, receives records over MaxRecordBytes (or
	// refused by Refuse) instead of stopping the pipeline.
	DeadLetterFile string
	// MaxRecordBytes bounds one record, value plus key (default
	// DefaultMaxRecordBytes). Raise it together with the topic's
	// max.message.bytes.
	MaxRecordBytes int
	// Refuse, as in kinesis.SinkConfig: a consumer's own limits.
	Refuse func(c *change.Change, record []byte) string
	Logger *slog.Logger
	// Now stamps records' ts_ms; default time.Now.
	Now func() time.Time
}

// Sink produces change records to a Kafka topic. It is a pipeline.Target.
//
// The producer is idempotent (franz-go's default: acks from all in-sync
// replicas, sequence numbers per partition), so its own retries of a failed
// produce neither reorder nor duplicate a partition's records. Each record
// goes to the partition stream.Spread picks for its partition key over the
// pinned partition count: one row's changes stay on one partition, in
// order. A truncate goes to every partition.
type Sink struct {
	cfg   SinkConfig
	cl    *kgo.Client
	adm   *kadm.Client
	prod  *core.Producer
	log   *slog.Logger
	parts int // partitions keys are spread over; 0 until the first Apply

	records, bytes, produceCalls atomic.Int64
	inflight                     atomic.Int64
}

var _ pipeline.Target = (*Sink)(nil)

// NewSink creates the client (no connection is made yet) and loads the
// state file.
func NewSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	opts, err := cfg.Connection.options(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateFile == "" {
		cfg.StateFile = "sluice-kafka-" + cfg.Topic + ".state.json"
	}
	log := cfg.Logger.With("topic", cfg.Topic)
	prod, err := core.NewProducer(core.ProducerConfig{
		Transport: "Kafka", Stream: cfg.Topic, Pipeline: cfg.Pipeline, Database: cfg.Database,
		StateFile: cfg.StateFile, DeadLetterFile: cfg.DeadLetterFile, DeadLetterKey: "stream.kafka.dead_letter_file",
		MaxRecordBytes: cfg.MaxRecordBytes, Refuse: cfg.Refuse, Logger: log, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	opts = append([]kgo.Opt{
		kgo.DefaultProduceTopic(cfg.Topic),
		// The partition is chosen here, from the partition key, so that it
		// does not depend on franz-go's hash or on the topic's current
		// partition count.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A record alone may fill a batch; the broker's limit is checked
		// per batch.
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes + 16<<10)),
		kgo.WithLogger(kgoLogger{log}),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		prod.Close()
		return nil, fmt.Errorf("create Kafka client: %w", err)
	}
	return &Sink{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), prod: prod, log: log}, nil
}

// Close flushes nothing (Apply waits for its records) and closes the client.
func (s *Sink) Close() error {
	s.cl.Close()
	return s.prod.Close()
}

// State reports what the state file says about each table.
func (s *Sink) State(ctx context.Context) (map[change.TableID]change.TableState, error) {
	return s.prod.State(ctx)
}

// Reset forgets a table's state before its (re)snapshot.
func (s *Sink) Reset(ctx context.Context, t *change.Table) error { return s.prod.Reset(ctx, t) }

// partitions returns the partition count keys are spread over: pinned in
// the state file at the first use, so that partitions added to the topic
// later do not move keys (a key's records would then be on two partitions,
// read independently, out of order).
func (s *Sink) partitions(ctx context.Context) (int, error) {
	if s.parts > 0 {
		return s.parts, nil
	}
	n, err := topicPartitions(ctx, s.adm, s.cfg.Topic)
	if err != nil {
		return 0, err
	}
	pinned := s.prod.Partitions()
	switch {
	case pinned == 0:
		if err := s.prod.PinPartitions(n); err != nil {
			return 0, err
		}
		pinned = n
	case n < pinned:
		return 0, fmt.Errorf("the Kafka topic %s has %d partitions, fewer than the %d this producer spreads keys over (state file %s): "+
			"the topic was recreated or is another one; point the producer at the right topic, or delete the state file to snapshot every table again",
			s.cfg.Topic, n, pinned, s.cfg.StateFile)
	case n > pinned:
		s.log.Warn("the topic has more partitions than keys are spread over; the extra ones stay unused so that each key keeps its partition (delete the state file and snapshot again to use them)",
			"partitions", n, "used", pinned)
	}
	s.parts = pinned
	return pinned, nil
}

// topicPartitions asks the brokers how many partitions the topic has.
func topicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("read metadata of Kafka topic %s: %w", topic, err)
	}
	d, ok := td[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return 0, fmt.Errorf("the Kafka topic %s does not exist: create it (kafka-topics.sh --create --topic %s --partitions N), sluice does not create topics", topic, topic)
	}
	if d.Err != nil {
		return 0, fmt.Errorf("read metadata of Kafka topic %s: %w", topic, explain(d.Err, topic))
	}
	if len(d.Partitions) == 0 {
		return 0, fmt.Errorf("the Kafka topic %s has no partitions", topic)
	}
	return len(d.Partitions), nil
}

// Apply produces every change of the batch and returns once the brokers
// acknowledged all of them; then it records the tables' new state in the
// state file. Changes already on the topic by the state file (a replayed
// batch) are skipped. Apply calls must not overlap.
//
// A failed Apply (a broker refusing a record, the context ending) may have
// left some records on the topic; the pipeline's retry sends the batch
// again. A key's last copies are still in its order (every retry resends
// from the batch's start, in order), and consumers reduce by position.
func (s *Sink) Apply(ctx context.Context, b *change.Batch) error {
	plan, err := s.prod.Prepare(b)
	if err != nil {
		return err
	}
	n := 0
	if plan.Records > 0 {
		if n, err = s.partitions(ctx); err != nil {
			return err
		}
	}
	// Dead letters reach the disk before the records after them are sent:
	// once Apply returns, the slot moves past them.
	if err := s.prod.SetAside(plan); err != nil {
		return err
	}
	for _, seg := range plan.Segments {
		var recs []*kgo.Record
		var size int64
		for _, r := range seg.Records {
			size += int64(r.Size())
			if seg.Everywhere {
				for p := range n {
					recs = append(recs, &kgo.Record{Key: []byte(r.Key), Value: r.Data, Partition: int32(p)})
				}
				continue
			}
			recs = append(recs, &kgo.Record{Key: []byte(r.Key), Value: r.Data, Partition: int32(core.Spread(r.Key, n))})
		}
		s.inflight.Add(size)
		s.produceCalls.Add(1)
		// A segment is a barrier: the next one waits for every record of
		// this one, so a truncate lands after what came before it on every
		// partition, and before what comes after.
		res := s.cl.ProduceSync(ctx, recs...)
		s.inflight.Add(-size)
		if err := res.FirstErr(); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("produce to Kafka topic %s: %w", s.cfg.Topic, ctx.Err())
			}
			return fmt.Errorf("produce to Kafka topic %s: %w", s.cfg.Topic, explain(err, s.cfg.Topic))
		}
		s.records.Add(int64(len(recs)))
		s.bytes.Add(size)
	}
	return s.prod.Commit(plan)
}

// explain adds the fix to the errors a user can fix.
func explain(err error, topic string) error {
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("topic %s does not exist (create it, or check stream.kafka.topic): %w", topic, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("the Kafka principal may not use topic %s (grant WRITE for the producer, READ for the consumer, and DESCRIBE, on the topic): %w", topic, err)
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return fmt.Errorf("the Kafka principal may not use the consumer group (grant READ on the group, or leave stream.kafka.group empty): %w", err)
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("the Kafka principal may not produce idempotently (grant IDEMPOTENT_WRITE on the cluster; it is implied by WRITE on Kafka 3.2 and later): %w", err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("the broker refused a record as too large (lower stream.kafka.max_record_bytes to the topic's max.message.bytes, or raise that): %w", err)
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("the Kafka brokers rejected the credentials (check stream.kafka.sasl): %w", err)
	}
	return err
}

// SinkStats is what the sink reports for status output.
type SinkStats struct {
	Topic string `json:"topic"`
	// Partitions is the count keys are spread over (0 before the first record).
	Partitions int `json:"partitions"`
	// Records and Bytes acknowledged by the brokers (values plus keys; a
	// truncate counts once per partition).
	Records       int64 `json:"records"`
	Bytes         int64 `json:"bytes"`
	InFlightBytes int64 `json:"in_flight_bytes"`
	ProduceCalls  int64 `json:"produce_calls"`
	DeadLettered  int64 `json:"dead_lettered"`
}

// Stats returns the sink's counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{Topic: s.cfg.Topic, Partitions: s.prod.Partitions(), Records: s.records.Load(), Bytes: s.bytes.Load(),
		InFlightBytes: s.inflight.Load(), ProduceCalls: s.produceCalls.Load(), DeadLettered: s.prod.DeadLettered()}
}

// kgoLogger passes franz-go's warnings and errors to slog; its info and
// debug lines are per-request chatter.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		l.log.Error("kafka client: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		l.log.Warn("kafka client: "+msg, keyvals...)
	}
}
