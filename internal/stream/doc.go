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
// Consumer side: Applier is what a warehouse offers a reader (a batch and
// its checkpoints in one transaction), Interner makes decoded records of one
// table shape share a *change.Table, and JSONLFile is the reject file.
//
// Neighbours: internal/change (the record codec), internal/pipeline (which
// drives the transports' sinks), internal/warehouse (which stores the
// checkpoints with the data).
package stream
