// Package kinesis carries change records over Amazon Kinesis Data Streams.
//
// Sink is a pipeline.Target: it encodes every change with
// change.AppendRecord and puts it on the stream with PutRecords, partition
// key = table + primary key, within Kinesis' limits (500 records and 5 MiB a
// call, 1 MiB a record), retrying throttled calls and resending only the
// records that failed — and, for the order of each key, every later record of
// a key that had a failure. Apply returns once Kinesis accepted every record,
// so the pipeline confirms the replication slot only then. Kinesis cannot
// hold the producer's per-table state, so the sink keeps it in a small state
// file.
//
// Reader is the consumer, a pipeline.Source: it reads every shard from the
// marks in its MarkStore on (children only after their parents are
// drained), decodes records (change records by default, or with the
// caller's Decoder), sets invalid records aside in a reject file, and
// emits batches carrying per-shard checkpoints (Batch.Marks) that the
// warehouse target stores in the same transaction as the data: exactly
// once into Postgres or DuckDB. Its Acks are batch tokens, not positions.
//
// Neighbours: internal/change (the record codec), internal/pipeline (which
// drives the Sink and the Reader), internal/stream (the core),
// internal/warehouse (whose StreamTarget is the consumer's target and mark
// store).
package kinesis
