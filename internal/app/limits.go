package app

import "github.com/sluice-dev/sluice/internal/config"

// applyBatches is how many queued batches one apply may merge (and twice
// the bytes of one): a target that fell behind catches up in fewer, larger
// transactions.
const applyBatches = 5

// limits is what the batch section means, the same in every mode.
//
// batch.max_changes and batch.max_bytes bound a batch where batches are
// made: the source cuts its batches at them (direct and producer), and a
// stream consumer's reader emits at most max_changes records' changes in
// one batch (a Kafka poll; a Kinesis shard's read, cut). Batches queue up
// in front of every target (a pipeline's queue, batch.queue_bytes: the
// source's in front of a warehouse or a stream sink, the reader's in front
// of a consumer's warehouse), and one apply merges up to applyBatches of
// them.
type limits struct {
	batchChanges int // a batch as it is made
	batchBytes   int
	applyChanges int // one apply of queued batches
	applyBytes   int
	queueBytes   int
}

func limitsOf(c *config.Config) limits {
	return limits{
		batchChanges: c.Batch.MaxChanges,
		batchBytes:   int(c.Batch.MaxBytes),
		applyChanges: applyBatches * c.Batch.MaxChanges,
		applyBytes:   2 * int(c.Batch.MaxBytes),
		queueBytes:   int(c.Batch.QueueBytes),
	}
}
