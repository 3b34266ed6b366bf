// Package metrics exposes a running sluice's figures in the Prometheus text
// format. It pulls them at scrape time from the functions the CLI hands it
// (the pipeline's, the slot's, the Kinesis sink's and reader's), so no stage
// knows about Prometheus and nothing is counted twice.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/stream/kafka"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
)

// Sources are where the figures come from; any may be nil.
type Sources struct {
	Pipeline func() pipeline.Stats
	Slot     func(ctx context.Context) (postgres.Status, error)
	Producer func() kinesis.SinkStats
	Consumer func() kinesis.ReaderStats
	// ConsumerApply is the stream consumer's apply health (its stalls and
	// failures), reported under stage "kinesis_consumer" or, with
	// KafkaConsumer set, "kafka_consumer".
	ConsumerApply func() pipeline.Health
	KafkaProducer func() kafka.SinkStats
	KafkaConsumer func() kafka.ReaderStats
}

// Handler serves the figures of one pipeline at /metrics.
func Handler(name string, src Sources) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{name: name, src: src})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type collector struct {
	name string
	src  Sources
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("sluice_"+name, help, append([]string{"pipeline"}, labels...), nil)
}

var (
	appliedChanges   = desc("applied_changes_total", "Changes the target committed.")
	appliedBatches   = desc("applied_batches_total", "Batches the target committed.")
	lagSeconds       = desc("lag_seconds", "Time since the newest applied change was committed at the source, while changes wait or are applied; 0 when idle.")
	queueBytes       = desc("queue_bytes", "Bytes of batches waiting for the target.")
	tableChanges     = desc("table_changes_total", "Changes applied to a table, snapshot rows included.", "table")
	tableSnapshot    = desc("table_snapshot_rows_total", "Snapshot rows applied to a table.", "table")
	slotRetained     = desc("slot_retained_wal_bytes", "WAL the replication slot keeps on the source's disk.", "slot")
	slotLag          = desc("slot_lag_bytes", "WAL written at the source and not yet confirmed by sluice.", "slot")
	slotActive       = desc("slot_active", "1 when a replication connection reads the slot.", "slot")
	producerRecords  = desc("kinesis_producer_records_total", "Records Kinesis accepted.", "stream")
	producerBytes    = desc("kinesis_producer_bytes_total", "Bytes Kinesis accepted (data and partition keys).", "stream")
	producerInFlight = desc("kinesis_producer_in_flight_bytes", "Bytes in PutRecords calls now.", "stream")
	producerRetries  = desc("kinesis_producer_retries_total", "Records sent again.", "stream")
	producerThrottle = desc("kinesis_producer_throttles_total", "Calls refused or partly failed for throughput.", "stream")
	producerDead     = desc("kinesis_producer_dead_lettered_total", "Records over the size limit set aside.", "stream")
	consumerRead     = desc("kinesis_consumer_records_total", "Records read from the stream.", "stream")
	consumerRejected = desc("kinesis_consumer_rejected_total", "Records that were not change records, set aside.", "stream")
	shardBehind      = desc("kinesis_shard_millis_behind_latest", "How far the last read of a shard was behind its newest record.", "stream", "shard")
	kafkaRecords     = desc("kafka_producer_records_total", "Records the Kafka brokers acknowledged (a truncate once per partition).", "topic")
	kafkaBytes       = desc("kafka_producer_bytes_total", "Bytes the Kafka brokers acknowledged (values and keys).", "topic")
	kafkaInFlight    = desc("kafka_producer_in_flight_bytes", "Bytes produced and not yet acknowledged.", "topic")
	kafkaDead        = desc("kafka_producer_dead_lettered_total", "Records over the size limit set aside.", "topic")
	kafkaRead        = desc("kafka_consumer_records_total", "Records read from the topic.", "topic")
	kafkaRejected    = desc("kafka_consumer_rejected_total", "Records that were not change records, set aside.", "topic")
	kafkaLag         = desc("kafka_partition_lag_records", "Records of a partition after the last one applied, as of the last fetch.", "topic", "partition")
	applyFailures    = desc("apply_failures_total", "Attempts to apply a batch that the target refused or that failed, by table (empty when the target named none) and class (permanent: a person must change the target; transient; fatal).", "stage", "table", "class")
	stalled          = desc("stalled", "1 while the target refuses the next batch and the pipeline retries it, confirming nothing past it.", "stage")
	stalledSeconds   = desc("stalled_seconds", "How long the current stall has lasted; 0 when not stalled.", "stage")
)

// Stages of the apply-health figures.
const (
	stageTarget   = "target"           // the pipeline's target: a warehouse, or the Kinesis producer
	stageConsumer = "kinesis_consumer" // the Kinesis consumer's warehouse
	stageKafka    = "kafka_consumer"   // the Kafka consumer's warehouse
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{appliedChanges, appliedBatches, lagSeconds, queueBytes, tableChanges, tableSnapshot,
		slotRetained, slotLag, slotActive, producerRecords, producerBytes, producerInFlight, producerRetries, producerThrottle,
		producerDead, consumerRead, consumerRejected, shardBehind, kafkaRecords, kafkaBytes, kafkaInFlight, kafkaDead, kafkaRead,
		kafkaRejected, kafkaLag, applyFailures, stalled, stalledSeconds} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.name
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{n}, labels...)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{n}, labels...)...)
	}
	if f := c.src.Pipeline; f != nil {
		st := f()
		counter(appliedChanges, float64(st.Applied))
		counter(appliedBatches, float64(st.Batches))
		gauge(lagSeconds, st.LagSeconds)
		gauge(queueBytes, float64(st.QueueBytes))
		for table, ts := range st.Tables {
			counter(tableChanges, float64(ts.Changes), table)
			counter(tableSnapshot, float64(ts.SnapshotRows), table)
		}
		c.health(ch, stageTarget, pipeline.Health{Stall: st.Stall, Failures: st.ApplyFailures})
	}
	if f := c.src.ConsumerApply; f != nil {
		stage := stageConsumer
		if c.src.KafkaConsumer != nil {
			stage = stageKafka
		}
		c.health(ch, stage, f())
	}
	if f := c.src.Slot; f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if st, err := f(ctx); err == nil {
			gauge(slotRetained, float64(st.RetainedBytes), st.Slot)
			gauge(slotLag, float64(st.LagBytes), st.Slot)
			active := 0.0
			if st.Active {
				active = 1
			}
			gauge(slotActive, active, st.Slot)
		}
	}
	if f := c.src.Producer; f != nil {
		st := f()
		counter(producerRecords, float64(st.Records), st.Stream)
		counter(producerBytes, float64(st.Bytes), st.Stream)
		gauge(producerInFlight, float64(st.InFlightBytes), st.Stream)
		counter(producerRetries, float64(st.Retries), st.Stream)
		counter(producerThrottle, float64(st.Throttles), st.Stream)
		counter(producerDead, float64(st.DeadLettered), st.Stream)
	}
	if f := c.src.Consumer; f != nil {
		st := f()
		counter(consumerRead, float64(st.Read), st.Stream)
		counter(consumerRejected, float64(st.Rejected), st.Stream)
		for shard, ss := range st.Shards {
			gauge(shardBehind, float64(ss.MillisBehindLatest), st.Stream, shard)
		}
	}
	if f := c.src.KafkaProducer; f != nil {
		st := f()
		counter(kafkaRecords, float64(st.Records), st.Topic)
		counter(kafkaBytes, float64(st.Bytes), st.Topic)
		gauge(kafkaInFlight, float64(st.InFlightBytes), st.Topic)
		counter(kafkaDead, float64(st.DeadLettered), st.Topic)
	}
	if f := c.src.KafkaConsumer; f != nil {
		st := f()
		counter(kafkaRead, float64(st.Read), st.Topic)
		counter(kafkaRejected, float64(st.Rejected), st.Topic)
		for p, ps := range st.Partitions {
			gauge(kafkaLag, float64(ps.Lag), st.Topic, p)
		}
	}
}

func (c *collector) health(ch chan<- prometheus.Metric, stage string, h pipeline.Health) {
	for _, f := range h.Failures {
		ch <- prometheus.MustNewConstMetric(applyFailures, prometheus.CounterValue, float64(f.Count), c.name, stage, f.Table, string(f.Class))
	}
	on, since := 0.0, 0.0
	if h.Stall != nil {
		on, since = 1, time.Since(h.Stall.Since).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(stalled, prometheus.GaugeValue, on, c.name, stage)
	ch <- prometheus.MustNewConstMetric(stalledSeconds, prometheus.GaugeValue, since, c.name, stage)
}
