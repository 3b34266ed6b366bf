package app

import (
	"context"
	"log/slog"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/events"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/stream"
	"github.com/sluice-dev/sluice/internal/stream/kafka"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
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
	Confirm(token change.LSN)
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
				// The Ack is the reader's batch token, not a source
				// position. The reader is told its batch is through once
				// queued: its marks commit in the views' state, not in the
				// target, and the reader keeps each batch until told.
				token := b.Ack
				b.Ack = 0
				if err := emit(ctx, b); err != nil {
					return err
				}
				r.Confirm(token)
				return nil
			})
		})
	}
	return g.Wait()
}

// engineMarks is an event stream's mark store: the view engine's state
// file, under the stream's mark name (eventMarkName), whatever name the
// transport asks by.
type engineMarks struct {
	e    *view.Engine
	name string
}

func (m engineMarks) StreamMarks(ctx context.Context, _ string) (map[string]string, error) {
	return m.e.StreamMarks(ctx, m.name)
}

// openEventReaders opens a reader for each event stream, from the marks the
// view engine stores on; records that are not events of the declared shape
// go to the stream's reject file. The named stats are for status.
func openEventReaders(ctx context.Context, c *config.Config, e *view.Engine, log *slog.Logger) ([]eventReader, []namedStats, func(), error) {
	evs, err := eventStreams(c)
	if err != nil {
		return nil, nil, nil, err
	}
	var readers []eventReader
	var stats []namedStats
	var closers []func() error
	closeAll := func() {
		for _, cl := range closers {
			cl()
		}
	}
	lim := limitsOf(c)
	for i, ev := range c.Events {
		tbl := evs[i].Table
		decode := func(dst []change.Change, rec stream.ReadRecord) ([]change.Change, error) {
			ch, err := events.Decode(tbl, rec.Data, rec.Shard, rec.Sequence, rec.Arrival)
			if err != nil {
				return dst, err
			}
			return append(dst, ch), nil
		}
		marks := engineMarks{e: e, name: evs[i].Stream}
		rejects := filepath.Join(c.StateDir, c.Pipeline+".events."+tbl.ID().String()+".rejects.jsonl")
		name := "events " + tbl.ID().String()
		rlog := log.With("events", tbl.ID().String())
		switch {
		case ev.Kafka != nil:
			if ev.Kafka.RejectFile != "" {
				rejects = ev.Kafka.RejectFile
			}
			rd, err := kafka.NewReader(ctx, kafka.ReaderConfig{Connection: kafkaConnection(ev.Kafka), RejectFile: rejects,
				Decode: decode, BatchChanges: lim.batchChanges, Logger: rlog}, marks)
			if err != nil {
				closeAll()
				return nil, nil, nil, err
			}
			readers, closers = append(readers, rd), append(closers, rd.Close)
			stats = append(stats, namedStats{name, func() any { return rd.Stats() }})
		case ev.Kinesis != nil:
			k := ev.Kinesis
			if k.RejectFile != "" {
				rejects = k.RejectFile
			}
			rd, err := kinesis.NewReader(ctx, kinesis.ReaderConfig{Connection: kinesis.Connection{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint},
				RejectFile: rejects, Decode: decode, BatchChanges: lim.batchChanges, Logger: rlog}, marks)
			if err != nil {
				closeAll()
				return nil, nil, nil, err
			}
			readers, closers = append(readers, rd), append(closers, rd.Close)
			stats = append(stats, namedStats{name, func() any { return rd.Stats() }})
		}
	}
	return readers, stats, closeAll, nil
}
