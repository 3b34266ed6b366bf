package app

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/view"
)

// eventStreams are the configured event streams as the view engine takes
// them. Marks are kept under the event table and the stream it is read
// from, so that pointing a name at another topic starts that topic afresh.
func eventStreams(c *config.Config) ([]view.EventStream, error) {
	tbls, err := c.EventTables()
	if err != nil {
		return nil, err
	}
	out := make([]view.EventStream, len(tbls))
	for i, ev := range c.Events {
		out[i] = view.EventStream{Table: tbls[i], Stream: eventMarkName(tbls[i].ID(), ev), Keep: ev.Keep}
	}
	return out, nil
}

func eventMarkName(id change.TableID, ev config.EventSpec) string {
	switch {
	case ev.Kafka != nil:
		return id.String() + "@kafka:" + ev.Kafka.Topic
	case ev.Kinesis != nil:
		return id.String() + "@kinesis:" + ev.Kinesis.Stream
	}
	return id.String()
}

// eventReader reads one event stream from its stored marks on, emitting
// batches of its events (inserts into its event table).
type eventReader interface {
	Stream(ctx context.Context, emit pipeline.Emit) error
}

// withEvents is the Postgres source with the event streams views read:
// while the source streams, each stream's reader emits into the same
// queue, so the view engine takes events between the source's
// transactions (see view.EventStream). Snapshots and confirmations are the
// source's alone: an event's mark commits in the views' state.
type withEvents struct {
	pipeline.Source
	readers []eventReader
}

func (s *withEvents) Stream(ctx context.Context, emit pipeline.Emit) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Source.Stream(gctx, emit) })
	for _, r := range s.readers {
		g.Go(func() error {
			return r.Stream(gctx, func(ctx context.Context, b *change.Batch) error {
				b.Ack = 0 // a reader's own bookkeeping, not a source position
				return emit(ctx, b)
			})
		})
	}
	return g.Wait()
}
