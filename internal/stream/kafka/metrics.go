package kafka

import "github.com/sluice-dev/sluice/internal/metrics"

// The sink's and the reader's figures in /metrics.
var (
	sinkRecords  = &metrics.Family{Name: "sluice_kafka_producer_records_total", Help: "Records the Kafka brokers acknowledged (a truncate once per partition).", Kind: metrics.Counter, Labels: []string{"topic"}}
	sinkBytes    = &metrics.Family{Name: "sluice_kafka_producer_bytes_total", Help: "Bytes the Kafka brokers acknowledged (values and keys).", Kind: metrics.Counter, Labels: []string{"topic"}}
	sinkInFlight = &metrics.Family{Name: "sluice_kafka_producer_in_flight_bytes", Help: "Bytes produced and not yet acknowledged.", Kind: metrics.Gauge, Labels: []string{"topic"}}
	sinkDead     = &metrics.Family{Name: "sluice_kafka_producer_dead_lettered_total", Help: "Records over the size limit set aside.", Kind: metrics.Counter, Labels: []string{"topic"}}

	readerRead     = &metrics.Family{Name: "sluice_kafka_consumer_records_total", Help: "Records read from the topic.", Kind: metrics.Counter, Labels: []string{"topic"}}
	readerRejected = &metrics.Family{Name: "sluice_kafka_consumer_rejected_total", Help: "Records that were not change records, set aside.", Kind: metrics.Counter, Labels: []string{"topic"}}
	partitionLag   = &metrics.Family{Name: "sluice_kafka_partition_lag_records", Help: "Records of a partition after the last one applied, as of the last fetch.", Kind: metrics.Gauge, Labels: []string{"topic", "partition"}}
)

var (
	_ metrics.Reporter = SinkStats{}
	_ metrics.Reporter = ReaderStats{}
)

// Report emits the sink's figures.
func (s SinkStats) Report(emit metrics.Emit) {
	emit(sinkRecords, float64(s.Records), s.Topic)
	emit(sinkBytes, float64(s.Bytes), s.Topic)
	emit(sinkInFlight, float64(s.InFlightBytes), s.Topic)
	emit(sinkDead, float64(s.DeadLettered), s.Topic)
}

// Report emits the reader's figures, each partition's lag.
func (s ReaderStats) Report(emit metrics.Emit) {
	emit(readerRead, float64(s.Read), s.Topic)
	emit(readerRejected, float64(s.Rejected), s.Topic)
	for p, ps := range s.Partitions {
		emit(partitionLag, float64(ps.Lag), s.Topic, p)
	}
}

// ConsumerStage names, in /metrics, the apply health of the warehouse a
// reader feeds.
const ConsumerStage = "kafka_consumer"
