// Package kafka carries change records over an Apache Kafka topic (Amazon
// MSK, Confluent, Redpanda, self-managed), with franz-go.
//
// Sink is a pipeline.Target on the stream core (internal/stream): the core
// makes the records and keeps the producer's state file; the sink produces
// them with an idempotent producer, each to the partition stream.Spread picks
// for its partition key over a partition count pinned in the state file, a
// truncate to every partition, and returns once the brokers acknowledged
// every record, so the pipeline confirms the replication slot only then.
//
// Reader is the consumer, a pipeline.Source: it reads every partition (or,
// with a consumer group, the group's share of them) from the marks in its
// MarkStore (the target) on, decodes records (change records by default, or
// with the caller's Decoder), sets invalid ones aside in a reject file, and
// emits a batch per poll carrying the offset of the last record of each
// partition (Batch.Marks), stored in the same transaction as the data:
// exactly once into Postgres or DuckDB. Its Acks are batch tokens; a group
// member polls again only once its poll is confirmed, and a poll fenced
// because another member applied a partition goes back to it (Fenced). The
// group's committed offsets are never read.
//
// Neighbours: internal/stream (the core), internal/stream/kinesis (the other
// transport), internal/pipeline (which drives the Sink and the Reader),
// internal/warehouse (whose StreamTarget is the consumer's target).
package kafka
