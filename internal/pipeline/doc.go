// Package pipeline wires a source to a target: it runs the initial snapshot
// of tables the target has not got yet, then streams, moving batches forward
// through a queue bounded in bytes (back-pressure: the source blocks, nothing
// is dropped) and acknowledgements backward. It is the one place that turns
// the highest durable position into the slot's confirmed flush.
//
// Between source and target sits the Transform seam, where SQL pipelines
// (cleanse, enrich, join) will rewrite batches; the default is the identity.
package pipeline
