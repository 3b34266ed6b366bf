package warehouse

import (
	"context"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// StreamWarehouse is a warehouse target that a stream consumer can feed
// (duckdb.Target, postgres.Target).
type StreamWarehouse interface {
	pipeline.Target
	// ApplyStream applies a batch read from a stream and stores its marks
	// in the same transaction (stream mode: no per-table position
	// filtering, truncates as watermarks).
	ApplyStream(ctx context.Context, b *change.Batch) error
	// StreamMarks reports the stored marks of one stream: shard → sequence.
	StreamMarks(ctx context.Context, stream string) (map[string]string, error)
}

// StreamTarget is a warehouse as the target of a stream consumer's
// pipeline, whose source is a stream reader: Apply is the warehouse's
// ApplyStream, so each batch's marks are stored with its data (exactly
// once), and StreamMarks makes it the reader's mark store.
type StreamTarget struct{ StreamWarehouse }

var _ pipeline.Target = StreamTarget{}

// Apply applies b in stream mode together with b.Marks.
func (t StreamTarget) Apply(ctx context.Context, b *change.Batch) error {
	return t.ApplyStream(ctx, b)
}
