// Package stream is what every stream between sluice's producer and its
// consumer needs, whatever carries the records (Kinesis, Kafka): the
// transports in stream/kinesis and stream/kafka only move bytes.
//
// Producer side: Producer turns a batch into records — one change record
// (change.AppendRecord) per change, under a partition key of table + key
// (the whole row for a keyless table), an update that changed the key split
// into a delete of the old key and an insert of the new one, a reset marker
// (a truncate at the snapshot's position) before the first row of a
// re-snapshot, and truncates marked to go to every partition. It skips what
// its state file says is already on the stream (a replayed batch), sets
// records over the transport's size limit (or refused by the consumer's
// check) aside in a dead-letter file or stops with an error naming the fix,
// and keeps the per-table state in that file once the transport reports
// every record accepted.
//
// Consumer side: the readers are pipeline sources. Mark is a shard's
// checkpoint, which travels in the batch (change.Batch.Marks) for the
// target to store with the data; MarkStore is where a reader finds the
// stored marks when it starts; Decoder turns a record into changes (by
// default Interner.DecodeRecord: a sluice change record, its table shape
// shared by pointer); Acks numbers the batches a reader emits, their Ack
// tokens, and keeps what each covers until the pipeline confirms it; and
// JSONLFile is the reject file.
//
// Neighbours: internal/change (the record codec), internal/pipeline (which
// drives the transports' sinks and readers), internal/warehouse (which
// stores the checkpoints with the data).
package stream
