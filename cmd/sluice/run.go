package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/stream/kafka"
	"github.com/sluice-dev/sluice/internal/stream/kinesis"
	"github.com/sluice-dev/sluice/internal/verify"
	"github.com/sluice-dev/sluice/internal/view"
)

func newRunCmd() *cobra.Command {
	var f configFlags
	var retryMax time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Mirror the tables: snapshot what the target lacks, then stream every change",
		Long: `run snapshots every table the target does not hold yet, then streams changes
until stopped. SIGINT or SIGTERM stops it gracefully: the batch in flight is
finished, everything else stays in the replication slot for the next run.

A batch the target refuses (a constraint the source does not have, a value
the column cannot hold, a lost connection, a full disk) does not stop it: it
stalls on that batch, confirms nothing past it, shows why in sluice status
and /metrics, and tries again with backoff (1s doubling to --retry-max), so
fixing the target resumes it with no restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			return runPipeline(cmd.Context(), c, runHooks{retry: pipeline.Backoff{Max: retryMax}})
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&retryMax, "retry-max", 5*time.Minute, "longest wait between attempts at a batch the target refused")
	return cmd
}

// runHooks let quickstart watch a pipeline it runs in-process, and carry
// the run's retry backoff.
type runHooks struct {
	started func(*running)
	retry   pipeline.Backoff
}

// running is one live pipeline with what status, verify and query need.
type running struct {
	cfg    *config.Config
	src    *postgres.Source
	tgt    *warehouseTarget
	p      *pipeline.Pipeline
	tables []*change.Table
	views  *view.Engine // nil without views
	log    *slog.Logger

	streamStats func() any // stream producer/consumer figures, when there is a stream
	sink        *kinesis.Sink
	reader      *kinesis.Reader
	kafkaSink   *kafka.Sink
	kafkaReader *kafka.Reader
	consumer    *pipeline.Retrier // the Kinesis consumer's applies, when there is one

	holdMu sync.Mutex
	hold   *pipeline.Hold
	timer  *time.Timer
}

func runPipeline(ctx context.Context, c *config.Config, hooks runHooks) error {
	log := slog.Default().With("pipeline", c.Pipeline)
	if c.Stream != nil {
		return runStream(ctx, c, log, hooks.retry)
	}
	src, err := openSource(c, log)
	if err != nil {
		return err
	}
	defer src.Close()
	tables, err := src.Prepare(ctx)
	if err != nil {
		return err
	}
	engine, transform, closeViews, err := openViews(ctx, c, tables, log)
	if err != nil {
		return err
	}
	defer closeViews()
	tgt, err := openTarget(ctx, c, log)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped while waiting for the target (a DuckDB file another
			// process holds): nothing was read from the slot.
			log.Info("stopped before the target opened")
			return nil
		}
		return err
	}
	// A target that failed to write is not closed: closing a DuckDB file
	// checkpoints it, which on a full disk can leave it damaged. Its log
	// is replayed when it is next opened, with room to spare by then.
	var runErr error
	defer func() {
		if runErr == nil {
			tgt.Close()
		}
	}()
	p := pipeline.New(src, tgt, pipeline.Options{
		QueueBytes:   int(c.Batch.QueueBytes),
		ApplyChanges: 5 * c.Batch.MaxChanges,
		ApplyBytes:   2 * int(c.Batch.MaxBytes),
		Logger:       log,
		Retry:        hooks.retry,
		Transform:    transform,
	})
	r := &running{cfg: c, src: src, tgt: tgt, p: p, tables: tables, views: engine, log: log}
	srv, err := admin.Start(c.Admin.Listen, c.AdminFile(), r)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("sluice running", "tables", len(tables), "target", config.Redact(c.Target.URL), "admin", srv.Addr())
	if hooks.started != nil {
		hooks.started(r)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go r.watchWAL(watchCtx)

	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, tables) }()
	select {
	case runErr = <-done:
		return runErr
	case <-ctx.Done():
		log.Info("stopping: finishing the batch in flight", "timeout", c.Shutdown)
		select {
		case runErr = <-done:
			log.Info("stopped")
			return runErr
		case <-time.After(c.Shutdown):
			runErr = errors.New("shutdown timed out")
			return fmt.Errorf("the batch in flight did not finish within shutdown_timeout %s: nothing is lost, the next run replays it", c.Shutdown)
		}
	}
}

func openSource(c *config.Config, log *slog.Logger) (*postgres.Source, error) {
	ids, keys, err := c.TableIDs()
	if err != nil {
		return nil, err
	}
	return postgres.New(postgres.Config{
		URL:             c.Source.URL,
		Pipeline:        c.Pipeline,
		Slot:            c.Source.Slot,
		Publication:     c.Source.Publication,
		Tables:          ids,
		Keys:            keys,
		SnapshotWorkers: c.Snapshot.Workers,
		ChunkRows:       c.Snapshot.ChunkRows,
		BatchChanges:    c.Batch.MaxChanges,
		BatchBytes:      int(c.Batch.MaxBytes),
		FlushInterval:   c.Batch.Interval,
		StatusInterval:  c.Source.StatusInterval,
		Logger:          log,
	})
}

// watchWAL makes retained WAL visible: an error in the log every minute
// while the slot holds more than source.max_retained_wal.
func (r *running) watchWAL(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := r.src.Status(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("read slot status", "err", err)
			}
			continue
		}
		if st.RetainedBytes > int64(r.cfg.Source.MaxRetainedWAL) {
			r.log.Error("replication slot retains more WAL than source.max_retained_wal: the target is falling behind or sluice was stopped; catch up, or run `sluice teardown` if this mirror is abandoned",
				"slot", st.Slot, "retained_bytes", st.RetainedBytes, "limit", r.cfg.Source.MaxRetainedWAL.String())
		}
	}
}

// Status is the admin endpoint's status: the pipeline's figures, the slot.
func (r *running) Status(ctx context.Context) (any, error) {
	rep := statusReport{Pipeline: r.cfg.Pipeline, Running: true, Target: config.Redact(r.cfg.Target.URL)}
	if r.p != nil {
		st := r.p.Stats()
		rep.Stats = &st
	}
	if r.src != nil {
		if ss, err := r.src.Status(ctx); err == nil {
			rep.Slot = slotReport(ss)
		} else {
			rep.SlotError = err.Error()
		}
	}
	if r.streamStats != nil {
		rep.Stream = r.streamStats()
	}
	if r.consumer != nil {
		h := r.consumer.Health()
		rep.ConsumerApply = &h
	}
	return rep, nil
}

// Metrics serves the pipeline's, the slot's and the stream's figures.
func (r *running) Metrics() http.Handler {
	var src metrics.Sources
	if r.p != nil {
		src.Pipeline = r.p.Stats
	}
	if r.src != nil {
		src.Slot = r.src.Status
	}
	if r.sink != nil {
		src.Producer = r.sink.Stats
	}
	if r.reader != nil {
		src.Consumer = r.reader.Stats
	}
	if r.kafkaSink != nil {
		src.KafkaProducer = r.kafkaSink.Stats
	}
	if r.kafkaReader != nil {
		src.KafkaConsumer = r.kafkaReader.Stats
	}
	if r.consumer != nil {
		src.ConsumerApply = r.consumer.Health
	}
	return metrics.Handler(r.cfg.Pipeline, src)
}

// Query runs a read-only statement against the target.
func (r *running) Query(ctx context.Context, sql string) (*admin.Result, error) {
	if r.tgt == nil {
		return nil, fmt.Errorf("this process has no target to query")
	}
	return r.tgt.Query(ctx, sql)
}

// errNoHold: only an in-process pipeline can be held at a position.
var errNoHold = admin.Errorf(admin.CodeNoHold, "this process cannot hold its target at a source position (stream consumer)")

// Call serves verify's operations on the running target.
func (r *running) Call(ctx context.Context, op string, args json.RawMessage) (any, error) {
	var a callArgs
	if len(args) > 0 {
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, fmt.Errorf("bad arguments to %s: %w", op, err)
		}
	}
	switch op {
	case "pause":
		if r.p == nil {
			return nil, errNoHold
		}
		return nil, r.pause(ctx)
	case "hold":
		if r.p == nil {
			return nil, errNoHold
		}
		return nil, r.holdAt(ctx, change.LSN(a.LSN))
	case "release":
		r.releaseHold()
		return nil, nil
	case "retry":
		// A person fixed the target: try the refused batch now.
		retried := false
		if r.p != nil {
			retried = r.p.RetryNow()
		}
		if r.consumer != nil {
			retried = r.consumer.RetryNow() || retried
		}
		return map[string]bool{"retried": retried}, nil
	case "state":
		if r.tgt == nil {
			return nil, fmt.Errorf("this process has no target")
		}
		st, err := r.tgt.State(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string]change.TableState{}
		for id, s := range st {
			out[id.String()] = s
		}
		return out, nil
	case "checksums", "bucketrows":
		if r.tgt == nil {
			return nil, fmt.Errorf("this process has no target (a stream producer): verify against the consumer's target")
		}
		t := a.Schema
		if t == nil || len(t.Columns) == 0 {
			return nil, fmt.Errorf("the request names no table schema")
		}
		if op == "checksums" {
			return r.tgt.Checksums(ctx, t, a.Buckets)
		}
		return r.tgt.BucketRows(ctx, t, a.Buckets, a.Bucket, a.Limit)
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

type callArgs struct {
	LSN     uint64        `json:"lsn"`
	Schema  *change.Table `json:"schema,omitempty"`
	Buckets int           `json:"buckets"`
	Bucket  int           `json:"bucket"`
	Limit   int           `json:"limit"`
}

// pause stops the target for verify; the hold lifts itself after two
// minutes in case the verify that asked for it died.
func (r *running) pause(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h, err := r.p.Pause(ctx)
	if err != nil {
		return err
	}
	r.holdMu.Lock()
	defer r.holdMu.Unlock()
	r.hold = h
	r.timer = time.AfterFunc(2*time.Minute, r.releaseHold)
	return nil
}

// holdAt moves the paused target to lsn: it applies every change committed
// before lsn and stops there.
func (r *running) holdAt(ctx context.Context, lsn change.LSN) error {
	r.holdMu.Lock()
	h := r.hold
	r.holdMu.Unlock()
	if h == nil {
		return fmt.Errorf("the pipeline is not paused: call pause first")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := h.Move(ctx, lsn); err != nil {
		r.releaseHold()
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the pipeline did not reach source position %s within a minute", lsn)
		}
		return err
	}
	return nil
}

func (r *running) releaseHold() {
	r.holdMu.Lock()
	defer r.holdMu.Unlock()
	if r.hold != nil {
		r.hold.Release()
		r.hold = nil
		r.timer.Stop()
	}
}

var _ verify.Side = (*warehouseTarget)(nil)
