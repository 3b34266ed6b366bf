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
	"github.com/sluice-dev/sluice/internal/stream/kafka"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// runStream runs a pipeline through a stream (Kinesis or Kafka): the
// producer half (Postgres to the stream), the consumer half (the stream to
// the target), or both.
func runStream(ctx context.Context, c *config.Config, log *slog.Logger, retry pipeline.Backoff) (runErr error) {
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
		sink, err := openStreamSink(ctx, c, r, log)
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
		r.src, r.tables, r.views = src, tables, engine
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
		// The reader ends its run on a failed apply; a supervisor would then
		// restart it into the same batch forever. Retry here instead, as
		// the in-process pipeline does.
		r.consumer = &pipeline.Retrier{Backoff: retry, Logger: log, What: "apply from the stream"}
		app = &retryingApplier{streamApplier: app, run: gctx, retry: r.consumer}
		rd, err := openStreamReader(ctx, c, r, app, log)
		if err != nil {
			return err
		}
		defer rd.Close()
		r.tgt = tgt
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
	if k := c.Stream.Kafka; k != nil {
		log.Info("sluice running through Kafka", "role", role, "topic", k.Topic, "admin", srv.Addr())
	} else {
		log.Info("sluice running through Kinesis", "role", role, "stream", c.Stream.Kinesis.Stream, "admin", srv.Addr())
	}
	return g.Wait()
}

// streamSink is the producer half's target, whichever the stream.
type streamSink interface {
	pipeline.Target
	Stats() any
	Close() error
}

// streamReader is the consumer half, whichever the stream.
type streamReader interface {
	Run(ctx context.Context) error
	Stats() any
	Close() error
}

// sinkWithStats and readerWithStats adapt a transport's typed Stats to
// the status output's any.
type sinkWithStats[S any] struct {
	pipeline.Target
	close func() error
	stats func() S
}

func (s sinkWithStats[S]) Stats() any   { return s.stats() }
func (s sinkWithStats[S]) Close() error { return s.close() }

type readerWithStats[S any] struct {
	run   func(context.Context) error
	close func() error
	stats func() S
}

func (r readerWithStats[S]) Run(ctx context.Context) error { return r.run(ctx) }
func (r readerWithStats[S]) Stats() any                    { return r.stats() }
func (r readerWithStats[S]) Close() error                  { return r.close() }

// openStreamSink opens the configured stream's producer; r learns it for
// the metrics.
func openStreamSink(ctx context.Context, c *config.Config, r *running, log *slog.Logger) (streamSink, error) {
	if k := c.Stream.Kafka; k != nil {
		sink, err := kafka.NewSink(ctx, kafka.SinkConfig{
			Connection:     kafkaConnection(k),
			Pipeline:       c.Pipeline,
			Database:       databaseOf(c.Source.URL),
			StateFile:      filepath.Join(c.StateDir, c.Pipeline+".kafka-producer.json"),
			DeadLetterFile: k.DeadLetterFile,
			MaxRecordBytes: int(k.MaxRecordBytes),
			// As for Kinesis: records Redshift could not parse are refused here.
			Refuse: redshiftRefuse(c),
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
		r.kafkaSink = sink
		return sinkWithStats[kafka.SinkStats]{Target: sink, close: sink.Close, stats: sink.Stats}, nil
	}
	k := c.Stream.Kinesis
	sink, err := kinesis.NewSink(ctx, kinesis.SinkConfig{
		Connection:     kinesis.Connection{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint},
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
		return nil, err
	}
	r.sink = sink
	return sinkWithStats[kinesis.SinkStats]{Target: sink, close: sink.Close, stats: sink.Stats}, nil
}

// openStreamReader opens the configured stream's consumer into app; r
// learns it for the metrics.
func openStreamReader(ctx context.Context, c *config.Config, r *running, app streamApplier, log *slog.Logger) (streamReader, error) {
	if k := c.Stream.Kafka; k != nil {
		rejects := k.RejectFile
		if rejects == "" {
			rejects = filepath.Join(c.StateDir, c.Pipeline+".kafka-rejects.jsonl")
		}
		rd, err := kafka.NewReader(ctx, kafka.ReaderConfig{Connection: kafkaConnection(k), Group: k.Group, RejectFile: rejects,
			BatchChanges: c.Batch.MaxChanges, Logger: log}, app)
		if err != nil {
			return nil, err
		}
		r.kafkaReader = rd
		return readerWithStats[kafka.ReaderStats]{run: rd.Run, close: rd.Close, stats: rd.Stats}, nil
	}
	k := c.Stream.Kinesis
	rejects := k.RejectFile
	if rejects == "" {
		rejects = filepath.Join(c.StateDir, c.Pipeline+".kinesis-rejects.jsonl")
	}
	conn := kinesis.Connection{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint}
	rd, err := kinesis.NewReader(ctx, kinesis.ReaderConfig{Connection: conn, RejectFile: rejects, Logger: log}, app)
	if err != nil {
		return nil, err
	}
	r.reader = rd
	return readerWithStats[kinesis.ReaderStats]{run: rd.Run, close: rd.Close, stats: rd.Stats}, nil
}

// kafkaConnection turns the config's Kafka section into the transport's.
func kafkaConnection(k *config.Kafka) kafka.Connection {
	cn := kafka.Connection{Brokers: k.Brokers, Topic: k.Topic, ClientID: k.ClientID}
	if t := k.TLS; t != nil && t.Enabled {
		cn.TLS = &kafka.TLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	if s := k.SASL; s != nil {
		cn.SASL = &kafka.SASL{Mechanism: s.Mechanism, Username: s.Username, Password: s.Password, Region: s.Region}
	}
	return cn
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

// retryingApplier keeps a stream consumer on a batch the target refuses:
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
