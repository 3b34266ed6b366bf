package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// runStream runs a pipeline through Kinesis: the producer half (Postgres to
// the stream), the consumer half (the stream to the target), or both.
func runStream(ctx context.Context, c *config.Config, log *slog.Logger, retry pipeline.Backoff) (runErr error) {
	k := c.Stream.Kinesis
	conn := kinesis.Connection{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint}
	role := c.Stream.Role
	r := &running{cfg: c, log: log}
	g, gctx := errgroup.WithContext(ctx)
	var stats []func() any
	// A Redshift target is merged, not consumed: Redshift reads the stream.
	// Its merger connects and checks setup before the producer starts.
	var merger *redshiftMerger
	if c.IsRedshift() && role != "producer" {
		var err error
		if merger, err = openRedshiftMerger(ctx, c, log); err != nil {
			return err
		}
		defer merger.Close()
	}
	if role == "producer" || role == "both" {
		src, err := openSource(c, log)
		if err != nil {
			return err
		}
		defer src.Close()
		tables, err := src.Prepare(ctx)
		if err != nil {
			return err
		}
		sink, err := kinesis.NewSink(ctx, kinesis.SinkConfig{
			Connection:     conn,
			Pipeline:       c.Pipeline,
			Database:       databaseOf(c.Source.URL),
			StateFile:      filepath.Join(c.StateDir, c.Pipeline+".kinesis-producer.json"),
			DeadLetterFile: k.DeadLetterFile,
			// Records a Redshift consumer could not parse are refused here,
			// like records over the size limit, instead of vanishing there.
			Refuse: redshiftRefuse(c),
			Logger: log,
		})
		if err != nil {
			return err
		}
		defer sink.Close()
		// Views run before the stream: their output travels like any table.
		engine, transform, closeViews, err := openViews(ctx, c, tables, log)
		if err != nil {
			return err
		}
		defer closeViews()
		r.src, r.tables, r.sink, r.views = src, tables, sink, engine
		r.p = pipeline.New(src, sink, pipeline.Options{QueueBytes: int(c.Batch.QueueBytes), Logger: log, Retry: retry, Transform: transform})
		stats = append(stats, func() any { return map[string]any{"producer": sink.Stats()} })
		g.Go(func() error { return r.p.Run(gctx, tables) })
		go r.watchWAL(gctx)
	}
	if merger != nil {
		merger.start(gctx, g, &stats)
	} else if role == "consumer" || role == "both" {
		tgt, err := openTarget(ctx, c, log)
		if err != nil {
			return err
		}
		// Not closed after a failure: see runPipeline.
		defer func() {
			if runErr == nil {
				tgt.Close()
			}
		}()
		app, ok := tgt.warehouseImpl.(streamApplier)
		if !ok {
			return fmt.Errorf("target %s cannot apply a stream", config.Redact(c.Target.URL))
		}
		rejects := k.RejectFile
		if rejects == "" {
			rejects = filepath.Join(c.StateDir, c.Pipeline+".kinesis-rejects.jsonl")
		}
		// The reader ends its run on a failed apply; a supervisor would then
		// restart it into the same batch forever. Retry here instead, as
		// the in-process pipeline does.
		r.consumer = &pipeline.Retrier{Backoff: retry, Logger: log, What: "apply from the stream"}
		app = &retryingApplier{streamApplier: app, run: gctx, retry: r.consumer}
		rd, err := kinesis.NewReader(ctx, kinesis.ReaderConfig{Connection: conn, RejectFile: rejects, Logger: log}, app)
		if err != nil {
			return err
		}
		defer rd.Close()
		r.tgt, r.reader = tgt, rd
		stats = append(stats, func() any { return map[string]any{"consumer": rd.Stats()} })
		g.Go(func() error { return stopped(gctx, rd.Run(gctx)) })
	}
	r.streamStats = func() any {
		out := make([]any, len(stats))
		for i, f := range stats {
			out[i] = f()
		}
		return out
	}
	srv, err := admin.Start(c.Admin.Listen, c.AdminFile(), r)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("sluice running through Kinesis", "role", role, "stream", k.Stream, "admin", srv.Addr())
	return g.Wait()
}

// stopped turns the error of a reader stopped by shutdown into nil.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func databaseOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(p.Path, "/")
}

// streamApplier is what a warehouse offers a stream reader.
type streamApplier interface {
	ApplyStream(ctx context.Context, b *change.Batch, marks []warehouse.StreamMark) error
	StreamMarks(ctx context.Context, stream string) (map[string]string, error)
}

// retryingApplier keeps a Kinesis consumer on a batch the target refuses:
// it retries with backoff (the marks are stored with the data, so nothing
// past the batch is marked read), reporting the stall in status and
// metrics, until the target takes it, the run ends, or the target fails
// fatally.
type retryingApplier struct {
	streamApplier
	run   context.Context // the run's context: the waits between attempts end with it
	retry *pipeline.Retrier
}

func (a *retryingApplier) ApplyStream(ctx context.Context, b *change.Batch, marks []warehouse.StreamMark) error {
	return a.retry.Do(a.run, b, func() error { return a.streamApplier.ApplyStream(ctx, b, marks) })
}
