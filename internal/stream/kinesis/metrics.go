package kinesis

import "github.com/sluice-dev/sluice/internal/metrics"

// The sink's and the reader's figures in /metrics.
var (
	sinkRecords  = &metrics.Family{Name: "sluice_kinesis_producer_records_total", Help: "Records Kinesis accepted.", Kind: metrics.Counter, Labels: []string{"stream"}}
	sinkBytes    = &metrics.Family{Name: "sluice_kinesis_producer_bytes_total", Help: "Bytes Kinesis accepted (data and partition keys).", Kind: metrics.Counter, Labels: []string{"stream"}}
	sinkInFlight = &metrics.Family{Name: "sluice_kinesis_producer_in_flight_bytes", Help: "Bytes in PutRecords calls now.", Kind: metrics.Gauge, Labels: []string{"stream"}}
	sinkRetries  = &metrics.Family{Name: "sluice_kinesis_producer_retries_total", Help: "Records sent again.", Kind: metrics.Counter, Labels: []string{"stream"}}
	sinkThrottle = &metrics.Family{Name: "sluice_kinesis_producer_throttles_total", Help: "Calls refused or partly failed for throughput.", Kind: metrics.Counter, Labels: []string{"stream"}}
	sinkDead     = &metrics.Family{Name: "sluice_kinesis_producer_dead_lettered_total", Help: "Records over the size limit set aside.", Kind: metrics.Counter, Labels: []string{"stream"}}

	readerRead     = &metrics.Family{Name: "sluice_kinesis_consumer_records_total", Help: "Records read from the stream.", Kind: metrics.Counter, Labels: []string{"stream"}}
	readerRejected = &metrics.Family{Name: "sluice_kinesis_consumer_rejected_total", Help: "Records that were not change records, set aside.", Kind: metrics.Counter, Labels: []string{"stream"}}
	shardBehind    = &metrics.Family{Name: "sluice_kinesis_shard_millis_behind_latest", Help: "How far the last read of a shard was behind its newest record.", Kind: metrics.Gauge, Labels: []string{"stream", "shard"}}
)

var (
	_ metrics.Reporter = SinkStats{}
	_ metrics.Reporter = ReaderStats{}
)

// Report emits the sink's figures.
func (s SinkStats) Report(emit metrics.Emit) {
	emit(sinkRecords, float64(s.Records), s.Stream)
	emit(sinkBytes, float64(s.Bytes), s.Stream)
	emit(sinkInFlight, float64(s.InFlightBytes), s.Stream)
	emit(sinkRetries, float64(s.Retries), s.Stream)
	emit(sinkThrottle, float64(s.Throttles), s.Stream)
	emit(sinkDead, float64(s.DeadLettered), s.Stream)
}

// Report emits the reader's figures, each shard's lag.
func (s ReaderStats) Report(emit metrics.Emit) {
	emit(readerRead, float64(s.Read), s.Stream)
	emit(readerRejected, float64(s.Rejected), s.Stream)
	for shard, ss := range s.Shards {
		emit(shardBehind, float64(ss.MillisBehindLatest), s.Stream, shard)
	}
}

// ConsumerStage names, in /metrics, the apply health of the warehouse a
// reader feeds.
const ConsumerStage = "kinesis_consumer"
