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
// stream consumer reads at most max_changes records for one apply (a Kafka
// poll; Kinesis shards' reads merged). Where made batches queue up for a
// target in the same process (the source's queue, in front of a warehouse
// or a stream sink), one apply merges up to applyBatches of them.
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
