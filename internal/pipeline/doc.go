// Package pipeline wires a source to a target: it runs the initial snapshot
// of tables the target has not got yet, then streams, moving batches forward
// through a queue bounded in bytes (back-pressure: the source blocks, nothing
// is dropped) and acknowledgements backward. It is the one place that turns
// the highest durable position into the slot's confirmed flush.
//
// A batch the target refuses stalls the pipeline rather than ending it
// (retry.go): the Retrier tries it again with capped backoff, confirming
// nothing past it, and reports the stall and the failure counts through
// Stats; targets describe their errors with TargetError (failure.go), which
// says whether retrying can help and names the table, column and fix.
//
// The same pipeline runs a stream consumer: a stream reader is a source
// whose acks are its own batch tokens (BatchAcker) and whose checkpoints
// travel in Batch.Marks for the target to store with the data; a batch the
// target refuses as fenced (ErrFenced: another reader applied some of it)
// goes back to the source (Fencer) instead of being retried.
//
// Between source and target sits the Transform seam, where SQL pipelines
// (cleanse, enrich, join) will rewrite batches; the default is the identity.
package pipeline
