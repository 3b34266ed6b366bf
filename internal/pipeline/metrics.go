package pipeline

import (
	"time"

	"github.com/sluice-dev/sluice/internal/metrics"
)

// The pipeline's figures in /metrics.
var (
	appliedChanges = &metrics.Family{Name: "sluice_applied_changes_total", Help: "Changes the target committed.", Kind: metrics.Counter}
	appliedBatches = &metrics.Family{Name: "sluice_applied_batches_total", Help: "Batches the target committed.", Kind: metrics.Counter}
	lagSeconds     = &metrics.Family{Name: "sluice_lag_seconds", Help: "Time since the newest applied change was committed at the source, while changes wait or are applied; 0 when idle.", Kind: metrics.Gauge}
	queueBytes     = &metrics.Family{Name: "sluice_queue_bytes", Help: "Bytes of batches waiting for the target.", Kind: metrics.Gauge}
	tableChanges   = &metrics.Family{Name: "sluice_table_changes_total", Help: "Changes applied to a table, snapshot rows included.", Kind: metrics.Counter, Labels: []string{"table"}}
	tableSnapshot  = &metrics.Family{Name: "sluice_table_snapshot_rows_total", Help: "Snapshot rows applied to a table.", Kind: metrics.Counter, Labels: []string{"table"}}

	applyFailures  = &metrics.Family{Name: "sluice_apply_failures_total", Help: "Attempts to apply a batch that the target refused or that failed, by table (empty when the target named none) and class (permanent: a person must change the target; transient; fatal).", Kind: metrics.Counter, Labels: []string{"stage", "table", "class"}}
	stalled        = &metrics.Family{Name: "sluice_stalled", Help: "1 while the target refuses the next batch and the pipeline retries it, confirming nothing past it.", Kind: metrics.Gauge, Labels: []string{"stage"}}
	stalledSeconds = &metrics.Family{Name: "sluice_stalled_seconds", Help: "How long the current stall has lasted; 0 when not stalled.", Kind: metrics.Gauge, Labels: []string{"stage"}}
)

// StageTarget is the stage of the pipeline's own apply health: its target
// (a warehouse, or a stream's producer).
const StageTarget = "target"

var (
	_ metrics.Reporter = Stats{}
	_ metrics.Reporter = StageHealth{}
	_ metrics.Reporter = StageStats{}
)

// Report emits the pipeline's figures, its apply health under StageTarget.
func (s Stats) Report(emit metrics.Emit) { StageStats{Stage: StageTarget, Stats: s}.Report(emit) }

// StageStats are a pipeline's figures with its apply health under Stage:
// the pipeline of a stream consumer reports under its reader's stage.
type StageStats struct {
	Stage string
	Stats
}

// Report emits the pipeline's figures, its apply health under s.Stage.
func (s StageStats) Report(emit metrics.Emit) {
	emit(appliedChanges, float64(s.Applied))
	emit(appliedBatches, float64(s.Batches))
	emit(lagSeconds, s.LagSeconds)
	emit(queueBytes, float64(s.QueueBytes))
	for table, ts := range s.Tables {
		emit(tableChanges, float64(ts.Changes), table)
		emit(tableSnapshot, float64(ts.SnapshotRows), table)
	}
	s.Health().Report(emit)
}

// Health is the stage's apply health alone.
func (s StageStats) Health() StageHealth {
	return StageHealth{Stage: s.Stage, Health: Health{Stall: s.Stall, Failures: s.ApplyFailures}}
}

// StageHealth is the apply health of one stage that applies batches with
// a Retrier (the pipeline's target, a stream consumer's warehouse), as
// /metrics shows it.
type StageHealth struct {
	Stage string
	Health
}

// Report emits the stage's failures by table and class, and its stall.
func (h StageHealth) Report(emit metrics.Emit) {
	for _, f := range h.Failures {
		emit(applyFailures, float64(f.Count), h.Stage, f.Table, string(f.Class))
	}
	on, since := 0.0, 0.0
	if h.Stall != nil {
		on, since = 1, time.Since(h.Stall.Since).Seconds()
	}
	emit(stalled, on, h.Stage)
	emit(stalledSeconds, since, h.Stage)
}
