package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Options are what a caller adds to the config of a run.
type Options struct {
	// Retry spaces the attempts at a batch the target refused, in the
	// pipeline and in a stream consumer alike.
	Retry pipeline.Backoff
	// Started, when set, is called once everything is open and the admin
	// endpoint listens, before anything runs (quickstart watches the
	// pipeline it runs in-process).
	Started func(*Running)
}

// mode is what a process runs of a pipeline.
type mode struct {
	produce bool // source → views → a warehouse, or → a stream
	consume bool // a stream → a warehouse, or Redshift's merge
	stream  bool // through Kinesis or Kafka
}

func modeOf(c *config.Config) mode {
	if c.Stream == nil {
		return mode{produce: true, consume: true}
	}
	r := c.Stream.Role
	return mode{produce: r == "producer" || r == "both", consume: r == "consumer" || r == "both", stream: true}
}

// Run builds the pipeline the config describes, in every mode, and runs it
// until ctx ends or a part fails:
//
//   - direct (no stream): source → views → warehouse (DuckDB, Postgres);
//   - producer: source → views → the Kinesis or Kafka sink;
//   - consumer: the stream's reader → warehouse, through the same pipeline
//     (the reader is its source; queue, retries, status and metrics as in
//     direct mode), or, for Redshift (which reads the stream itself), the
//     merge schedule;
//   - both: the two halves in one process.
//
// Beside them run the retained-WAL watch (with a source) and the admin
// endpoint. When ctx ends, the parts get shutdown_timeout to finish what
// they are applying; nothing unconfirmed is lost either way.
func Run(ctx context.Context, c *config.Config, opt Options) (runErr error) {
	log := slog.Default().With("pipeline", c.Pipeline)
	m := modeOf(c)
	lim := limitsOf(c)
	r := &Running{cfg: c, log: log}
	g, gctx := errgroup.WithContext(ctx)
	var parts []func(ctx context.Context) error // started once all is open

	// A target that failed to write is not closed: closing a DuckDB file
	// checkpoints it, which on a full disk can leave it damaged. Its log
	// is replayed when it is next opened, with room to spare by then.
	closeTarget := func(t *target) {
		if runErr == nil {
			t.Close()
		}
	}

	// A Redshift target is merged, not consumed: Redshift reads the stream.
	// Its merger connects and checks setup before the producer starts.
	var merger *redshiftMerger
	if m.stream && m.consume && c.IsRedshift() {
		var err error
		if merger, err = openRedshiftMerger(ctx, c, log); err != nil {
			return err
		}
		defer merger.Close()
	}

	var tables []*change.Table
	if m.produce {
		src, err := openSource(c, log)
		if err != nil {
			return err
		}
		defer src.Close()
		if tables, err = src.Prepare(ctx); err != nil {
			return err
		}
		// Views run before the target or the stream: their output travels
		// like any table's.
		engine, transform, closeViews, err := openViews(ctx, c, tables, log)
		if err != nil {
			return err
		}
		defer closeViews()
		var dst pipeline.Target
		if m.stream {
			sink, err := openStreamSink(ctx, c, log)
			if err != nil {
				return err
			}
			defer sink.close()
			dst = sink
			r.streams = append(r.streams, namedStats{"producer", sink.stats})
			r.figures = append(r.figures, sink.figures)
		} else {
			tgt, err := openTarget(ctx, c, log)
			if err != nil {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					// Stopped while waiting for the target (a DuckDB file
					// another process holds): nothing was read from the slot.
					log.Info("stopped before the target opened")
					return nil
				}
				return err
			}
			defer closeTarget(tgt)
			r.tgt, dst = tgt, tgt
		}
		r.src, r.views = src, engine
		var source pipeline.Source = src
		if len(c.Events) > 0 {
			readers, stats, closeReaders, err := openEventReaders(ctx, c, engine, log)
			if err != nil {
				return err
			}
			defer closeReaders()
			source = &withEvents{Source: src, readers: readers}
			r.streams = append(r.streams, stats...)
		}
		r.p = pipeline.New(source, dst, pipeline.Options{
			QueueBytes:   lim.queueBytes,
			ApplyChanges: lim.applyChanges,
			ApplyBytes:   lim.applyBytes,
			Logger:       log,
			Retry:        opt.Retry,
			Transform:    transform,
		})
		if !m.stream {
			// verify holds the target at a source position through this
			// pipeline only when the pipeline feeds the target. A producer's
			// target is a stream; in role both, the process's target is
			// fed by the stream's consumer, which a hold on the producer
			// does not stop at that position.
			r.hold = newHolder(r.p)
		}
		r.figures = append(r.figures, metrics.Live(r.p.Stats), src)
		if engine != nil {
			r.figures = append(r.figures, viewFigures(viewIDs(c.Views), engine.Stopped))
		}
		parts = append(parts, func(ctx context.Context) error { return r.p.Run(ctx, tables) })
	}

	switch {
	case merger != nil:
		r.streams = append(r.streams, namedStats{"redshift", func() any { return merger.status() }})
		parts = append(parts, func(ctx context.Context) error { return stopped(ctx, merger.run(ctx)) })
	case m.stream && m.consume:
		tgt, err := openTarget(ctx, c, log)
		if err != nil {
			return err
		}
		defer closeTarget(tgt)
		sw, ok := tgt.warehouseImpl.(warehouse.StreamWarehouse)
		if !ok {
			return fmt.Errorf("target %s cannot apply a stream", config.Redact(c.Target.URL))
		}
		// The consumer runs the same pipeline as direct mode: the reader is
		// its source, the warehouse (applying in stream mode, storing each
		// batch's marks with its data) its target and the reader's mark store.
		dst := warehouse.StreamTarget{StreamWarehouse: sw}
		rd, err := openStreamReader(ctx, c, dst, log)
		if err != nil {
			return err
		}
		defer rd.close()
		r.tgt = tgt
		r.consumer = pipeline.New(rd.src, dst, pipeline.Options{
			QueueBytes:   lim.queueBytes,
			ApplyChanges: lim.applyChanges,
			ApplyBytes:   lim.applyBytes,
			Logger:       log.With("stage", rd.stage),
			Retry:        opt.Retry,
		})
		r.streams = append(r.streams, namedStats{"consumer", rd.stats})
		r.figures = append(r.figures, rd.figures, consumerFigures(r.consumer, rd.stage, m.produce))
		parts = append(parts, func(ctx context.Context) error { return r.consumer.Run(ctx, nil) })
	}

	srv, err := admin.Start(c.Admin.Listen, c.AdminFile(), r)
	if err != nil {
		return err
	}
	defer srv.Close()
	switch {
	case !m.stream:
		log.Info("sluice running", "tables", len(tables), "target", config.Redact(c.Target.URL), "admin", srv.Addr())
	case c.Stream.Kafka != nil:
		log.Info("sluice running through Kafka", "role", c.Stream.Role, "topic", c.Stream.Kafka.Topic, "admin", srv.Addr())
	default:
		log.Info("sluice running through Kinesis", "role", c.Stream.Role, "stream", c.Stream.Kinesis.Stream, "admin", srv.Addr())
	}
	if opt.Started != nil {
		opt.Started(r)
	}
	for _, part := range parts {
		g.Go(func() error { return part(gctx) })
	}
	if r.src != nil {
		watchCtx, stopWatch := context.WithCancel(gctx)
		defer stopWatch()
		go watchWAL(watchCtx, r.src, c.Source.MaxRetainedWAL, log)
	}

	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		log.Info("stopping: finishing the batch in flight", "timeout", c.Shutdown)
		select {
		case err := <-done:
			log.Info("stopped")
			return err
		case <-time.After(c.Shutdown):
			return fmt.Errorf("the batch in flight did not finish within shutdown_timeout %s: nothing is lost, the next run replays it", c.Shutdown)
		}
	}
}

// consumerFigures are a stream consumer's pipeline figures in /metrics,
// its apply health under stage (its reader's). Beside a producer (role
// both) only that health: the pipeline-wide figures (applied changes, lag,
// queue, tables) are the producer's pipeline's, named as in direct mode.
func consumerFigures(p *pipeline.Pipeline, stage string, producer bool) metrics.Reporter {
	if producer {
		return metrics.Live(func() pipeline.StageHealth { return pipeline.StageStats{Stage: stage, Stats: p.Stats()}.Health() })
	}
	return metrics.Live(func() pipeline.StageStats { return pipeline.StageStats{Stage: stage, Stats: p.Stats()} })
}
