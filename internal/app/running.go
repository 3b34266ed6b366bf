package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/query"
	"github.com/sluice-dev/sluice/internal/source/postgres"
	"github.com/sluice-dev/sluice/internal/view"
)

// Running is one live pipeline, as Run built it: the admin endpoint's
// backend (status, metrics, query, verify's calls). The parts a mode lacks
// are nil: a producer has no target, a consumer no source nor p (its
// pipeline, fed by the stream, is consumer).
type Running struct {
	cfg *config.Config
	log *slog.Logger

	src      *postgres.Source
	tgt      *target
	p        *pipeline.Pipeline
	hold     *holder            // when p feeds tgt (direct)
	consumer *pipeline.Pipeline // stream reader → tgt
	views    *view.Engine       // nil without views

	figures []metrics.Reporter // each part's, for /metrics
	streams []namedStats       // the stream halves' figures, in status
}

type namedStats struct {
	name  string
	stats func() any
}

var (
	_ admin.Backend   = (*Running)(nil)
	_ admin.Querier   = (*Running)(nil)
	_ admin.Caller    = (*Running)(nil)
	_ admin.Metricser = (*Running)(nil)
)

// Stats are the figures of the pipeline the source feeds (zero for a
// stream consumer).
func (r *Running) Stats() pipeline.Stats {
	if r.p == nil {
		return pipeline.Stats{}
	}
	return r.p.Stats()
}

// Status is the admin endpoint's status: the pipeline's figures, the slot,
// the stream halves'.
func (r *Running) Status(ctx context.Context) (any, error) {
	rep := StatusReport{Pipeline: r.cfg.Pipeline, Running: true, Target: config.Redact(r.cfg.Target.URL)}
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
	if len(r.streams) > 0 {
		out := make([]any, len(r.streams))
		for i, s := range r.streams {
			out[i] = map[string]any{s.name: s.stats()}
		}
		rep.Stream = out
	}
	if r.consumer != nil {
		st := r.consumer.Stats()
		rep.Consumer = &st
	}
	return rep, nil
}

// Metrics serves the figures of every part Run built: the pipeline's, the
// slot's, the views', the stream halves'.
func (r *Running) Metrics() http.Handler {
	return metrics.Handler(r.cfg.Pipeline, r.figures...)
}

// Query runs a read-only statement against the target.
func (r *Running) Query(ctx context.Context, sql string) (*query.Result, error) {
	if r.tgt == nil {
		return nil, admin.Errorf(admin.CodeUnsupported, "this process has no target to query")
	}
	return r.tgt.Query(ctx, sql)
}

// callArgs are the arguments of every call, each using its own.
type callArgs struct {
	LSN     uint64        `json:"lsn"`
	Schema  *change.Table `json:"schema,omitempty"`
	Buckets int           `json:"buckets"`
	Bucket  int           `json:"bucket"`
	Limit   int           `json:"limit"`
}

// Call serves verify's operations on the running target, and retry.
func (r *Running) Call(ctx context.Context, op string, args json.RawMessage) (any, error) {
	var a callArgs
	if len(args) > 0 {
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, admin.Errorf(admin.CodeBadRequest, "bad arguments to %s: %w", op, err)
		}
	}
	switch op {
	case "pause", "hold":
		if r.hold == nil {
			// Only a target fed by the source's pipeline can be held at a
			// source position: a stream consumer's pipeline reads several
			// shards, in no one commit order (pipeline.ErrNoPositions).
			return nil, admin.Errorf(admin.CodeNoHold, "this process cannot hold its target at a source position (stream consumer)")
		}
		if op == "pause" {
			return nil, r.hold.Pause(ctx)
		}
		return nil, r.hold.MoveTo(ctx, change.LSN(a.LSN))
	case "release":
		if r.hold != nil {
			r.hold.Release()
		}
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
			return nil, admin.Errorf(admin.CodeUnsupported, "this process has no target")
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
			return nil, admin.Errorf(admin.CodeUnsupported, "this process has no target (a stream producer): verify against the consumer's target")
		}
		t := a.Schema
		if t == nil || len(t.Columns) == 0 {
			return nil, admin.Errorf(admin.CodeBadRequest, "the request names no table schema")
		}
		if op == "checksums" {
			return r.tgt.Checksums(ctx, t, a.Buckets)
		}
		return r.tgt.BucketRows(ctx, t, a.Buckets, a.Bucket, a.Limit)
	}
	return nil, admin.Errorf(admin.CodeUnsupported, "unknown operation %q", op)
}
