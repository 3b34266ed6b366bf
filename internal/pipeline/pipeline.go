package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"golang.org/x/sync/errgroup"
)

// errStopping is returned to a source whose emit raced with shutdown.
var errStopping = errors.New("pipeline is stopping")

// Options bound the pipeline's memory and batch sizes. How the limits
// interact: the source cuts batches of at most its own BatchChanges/BatchBytes;
// the queue holds at most QueueBytes of them (the source blocks beyond that);
// the target applies up to ApplyChanges/ApplyBytes at once, merging queued
// batches while it was busy. Peak memory is about QueueBytes + ApplyBytes +
// one source batch.
type Options struct {
	QueueBytes   int          // default 64 MiB
	ApplyChanges int          // default 50,000
	ApplyBytes   int          // default 32 MiB
	Transform    Transform    // default Identity
	Logger       *slog.Logger // default slog.Default()
	Now          func() time.Time
	// Retry spaces the attempts at a batch the target refused (default
	// 1s doubling to 5 minutes). See Run.
	Retry Backoff
}

func (o *Options) defaults() {
	if o.QueueBytes <= 0 {
		o.QueueBytes = 64 << 20
	}
	if o.ApplyChanges <= 0 {
		o.ApplyChanges = 50_000
	}
	if o.ApplyBytes <= 0 {
		o.ApplyBytes = 32 << 20
	}
	if o.Transform == nil {
		o.Transform = Identity{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Retry.defaults()
}

// Pipeline moves changes from one Source to one Target.
type Pipeline struct {
	src   Source
	dst   Target
	opt   Options
	q     *queue
	retry *Retrier

	mu         sync.Mutex
	stats      Stats
	hold       *Hold      // a verify's grip on the target, if any
	applying   bool       // the writer is applying a batch, or holds one transformed ahead
	seen       change.LSN // highest commit or ack position applied
	seenChange change.LSN // highest commit position of a change applied

	// ahead is the next batch, taken from the queue and transformed while
	// the target applied the one before (see applyOnce); only the writer
	// touches it.
	ahead *aheadBatch
}

// New wires src to dst. Nothing runs until Run.
func New(src Source, dst Target, opt Options) *Pipeline {
	opt.defaults()
	return &Pipeline{src: src, dst: dst, opt: opt, q: newQueue(opt.QueueBytes),
		retry: &Retrier{Backoff: opt.Retry, Logger: opt.Logger, Now: opt.Now},
		stats: Stats{Phase: PhaseStarting, Tables: map[string]*TableStats{}}}
}

// Phase is where the pipeline is in its life.
type Phase string

const (
	PhaseStarting  Phase = "starting"
	PhaseSnapshot  Phase = "snapshot"
	PhaseStreaming Phase = "streaming"
	// PhaseStalled: the target refuses the next batch; the pipeline retries
	// it with backoff and confirms nothing past it (Stats.Stall says why).
	PhaseStalled Phase = "stalled"
	PhaseStopped Phase = "stopped"
)

// Stats is what the pipeline reports about itself (status, progress, metrics).
type Stats struct {
	Phase        Phase      `json:"phase"`
	Started      time.Time  `json:"started"`
	Applied      int64      `json:"applied_changes"`
	Batches      int64      `json:"applied_batches"`
	Confirmed    change.LSN `json:"-"`
	ConfirmedLSN string     `json:"confirmed_lsn,omitempty"`
	// ConfirmedBatch is, instead of ConfirmedLSN, the last token confirmed
	// to a BatchAcker source (a stream reader): the batches it emitted up
	// to this one are committed. It is no position.
	ConfirmedBatch uint64                 `json:"confirmed_batch,omitempty"`
	LastApply      time.Time              `json:"last_apply"`
	QueueBatches   int                    `json:"queue_batches"`
	QueueBytes     int                    `json:"queue_bytes"`
	Tables         map[string]*TableStats `json:"tables"`
	// LagSeconds is how long ago the newest applied change was committed at
	// the source, while changes are waiting or being applied; 0 when idle.
	LagSeconds float64 `json:"lag_seconds"`
	// ChangesPerSecond is the apply rate over the last apply window.
	ChangesPerSecond float64 `json:"changes_per_second"`
	// Stall is the batch the target keeps refusing, while it does.
	Stall *Stall `json:"stall,omitempty"`
	// ApplyFailures counts failed attempts to apply, per table and class.
	ApplyFailures []FailureCount `json:"apply_failures,omitempty"`
}

// TableStats is per-table progress.
type TableStats struct {
	SnapshotRows  int64     `json:"snapshot_rows"`
	Snapshotted   bool      `json:"snapshotted"`
	Changes       int64     `json:"changes"`
	AppliedLSN    string    `json:"applied_position"`
	LastCommit    time.Time `json:"last_commit"`
	LastAppliedAt time.Time `json:"last_applied_at"`
	// Stopped is why the transform stopped producing this table (a view
	// that failed), while the rest goes on; empty while it runs.
	Stopped string `json:"stopped,omitempty"`
}

// stopper is a Transform that can stop one output alone (a failing view):
// the pipeline shows which in Stats.
type stopper interface {
	Stopped() map[change.TableID]string
}

// Stats returns a copy of the current figures.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Tables = make(map[string]*TableStats, len(p.stats.Tables))
	for k, v := range p.stats.Tables {
		c := *v
		s.Tables[k] = &c
	}
	if st, ok := p.opt.Transform.(stopper); ok {
		for id, why := range st.Stopped() {
			ts := s.Tables[id.String()]
			if ts == nil {
				ts = &TableStats{}
				s.Tables[id.String()] = ts
			}
			ts.Stopped = why
		}
	}
	s.QueueBatches, s.QueueBytes = p.q.len()
	if _, ok := p.src.(BatchAcker); ok {
		s.ConfirmedBatch = uint64(s.Confirmed)
	} else {
		s.ConfirmedLSN = s.Confirmed.String()
	}
	if s.QueueBatches == 0 && p.opt.Now().Sub(s.LastApply) > 2*time.Second {
		s.LagSeconds = 0
	}
	h := p.retry.Health()
	s.Stall, s.ApplyFailures = h.Stall, h.Failures
	if s.Stall != nil && s.Phase != PhaseStopped {
		s.Phase = PhaseStalled
	}
	return s
}

// RetryNow makes a stalled pipeline try the refused batch again at once,
// instead of at the end of its backoff. It reports whether it was stalled.
func (p *Pipeline) RetryNow() bool { return p.retry.RetryNow() }

func (p *Pipeline) table(id string) *TableStats {
	ts := p.stats.Tables[id]
	if ts == nil {
		ts = &TableStats{}
		p.stats.Tables[id] = ts
	}
	return ts
}

// Run snapshots every table the target does not hold completely yet, then
// streams until ctx ends. When ctx ends, it stops reading, lets the apply in
// flight finish and returns nil: everything not applied is still in the slot.
//
// A batch the target refuses does not end the run: the pipeline stalls on
// it, retrying with backoff (Options.Retry) until the target takes it, so a
// fix at the target (dropping a constraint, freeing disk) resumes it with
// no restart; meanwhile Stats reports the stall and nothing past the last
// committed batch is confirmed. Only a Fatal TargetError ends the run
// (the target must be opened again). Any other failure (the source's, the
// target's state or reset before the snapshot) is returned; the source's
// position has then not moved past anything the target did not commit.
func (p *Pipeline) Run(ctx context.Context, tables []*change.Table) error {
	log := p.opt.Logger
	p.mu.Lock()
	p.stats.Started = p.opt.Now()
	for _, t := range tables {
		p.table(t.ID().String())
	}
	p.mu.Unlock()

	state, err := p.dst.State(ctx)
	if err != nil {
		return fmt.Errorf("read target state: %w", err)
	}
	plan, err := p.opt.Transform.Start(ctx, tables, state)
	if err != nil {
		return fmt.Errorf("start transform: %w", err)
	}
	p.mu.Lock()
	outputs := map[string]bool{}
	for _, t := range plan.Outputs {
		st := state[t.ID()]
		outputs[t.ID().String()] = true
		p.table(t.ID().String()).Snapshotted = st.Snapshotted
		p.table(t.ID().String()).AppliedLSN = st.Applied.String()
	}
	// A source table the transform only reads (a view's input that is not
	// mirrored) has no table in the target to report on.
	for _, t := range tables {
		if id := t.ID().String(); !outputs[id] {
			delete(p.stats.Tables, id)
		}
	}
	p.mu.Unlock()
	for _, t := range plan.Reset {
		log.Info("table needs a snapshot", "table", t.ID())
		if err := p.dst.Reset(ctx, t); err != nil {
			return fmt.Errorf("prepare target table %s for its snapshot: %w", t.ID(), err)
		}
	}
	need := plan.Snapshot

	g, gctx := errgroup.WithContext(ctx)
	srcDone := make(chan struct{})
	g.Go(func() error {
		defer close(srcDone)
		defer p.q.close()
		emit := func(ctx context.Context, b *change.Batch) error { return p.q.push(ctx, b) }
		if len(need) > 0 {
			p.setPhase(PhaseSnapshot)
			if err := p.src.Snapshot(gctx, need, emit); err != nil {
				return stopped(gctx, fmt.Errorf("snapshot: %w", err))
			}
		}
		p.setPhase(PhaseStreaming)
		return stopped(gctx, p.src.Stream(gctx, emit))
	})
	g.Go(func() error {
		// Applies run on a context that shutdown does not cancel, so the
		// batch in flight finishes; a failing source still stops us.
		applyCtx := context.WithoutCancel(gctx)
		for {
			if gctx.Err() != nil {
				return nil
			}
			var b, tb *change.Batch
			if a := p.ahead; a != nil {
				p.ahead = nil
				b, tb = a.b, a.tb
			} else if b = p.q.pop(p.opt.ApplyChanges, p.opt.ApplyBytes); b == nil {
				return nil
			}
			if err := p.applyHolding(gctx, applyCtx, b, tb); err != nil {
				if errors.Is(err, errShutdown) {
					return nil // the batch stays in the slot
				}
				return err
			}
		}
	})
	err = g.Wait()
	p.setPhase(PhaseStopped)
	return err
}

// stopped turns the error a source returns on shutdown into nil.
func stopped(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, errStopping) || errors.Is(err, ctx.Err())) {
		return nil
	}
	if err == nil && ctx.Err() == nil {
		return errors.New("source stopped streaming without an error")
	}
	return err
}

// errShutdown: the run ended while a refused batch waited for its retry.
var errShutdown = errors.New("pipeline stopped while retrying a batch")

// apply applies b, retrying while the target refuses it (see Run). Attempts
// run on applyCtx; the waits between them end with runCtx. tb is b's
// transform output when it was transformed ahead, else nil.
func (p *Pipeline) apply(runCtx, applyCtx context.Context, b, tb *change.Batch) error {
	// The batch is transformed once; a refused apply retries the same
	// output (a transform's state has moved past its input by then).
	err := p.retry.Do(runCtx, b, func() error {
		for {
			if tb == nil {
				out, err := p.opt.Transform.Transform(applyCtx, b)
				if err != nil {
					return fmt.Errorf("transform batch: %w", err)
				}
				tb = out
			}
			// The source re-snapshots these tables: their rows follow. A reset
			// done by a failed attempt is done again harmlessly.
			for _, t := range tb.Reset {
				if err := p.dst.Reset(applyCtx, t); err != nil {
					return fmt.Errorf("prepare target table %s for its re-snapshot: %w", t.ID(), err)
				}
				p.mu.Lock()
				p.table(t.ID().String()).Snapshotted = false
				p.mu.Unlock()
			}
			err := p.applyOnce(applyCtx, b, tb)
			f, ok := p.src.(Fencer)
			if !ok || !errors.Is(err, ErrFenced) {
				return err
			}
			// Another reader applied some of it: no retry can help. The
			// source leaves those records out (see Fencer).
			if b, tb = f.Fenced(b, err), nil; b == nil {
				return nil
			}
		}
	})
	if err == nil {
		err = p.applyPages(runCtx, applyCtx)
	}
	if err != nil && runCtx.Err() != nil && errors.Is(err, runCtx.Err()) {
		return errShutdown
	}
	return err
}

// applyPages applies the rest of a paging transform's output, before the
// transform is handed another batch (see Pager).
func (p *Pipeline) applyPages(runCtx, applyCtx context.Context) error {
	pg, ok := p.opt.Transform.(Pager)
	if !ok {
		return nil
	}
	for pg.Pending() {
		tb, err := pg.Next(applyCtx)
		if err != nil {
			return fmt.Errorf("transform batch: %w", err)
		}
		b := &change.Batch{} // confirms nothing more to the source
		if err := p.retry.Do(runCtx, b, func() error { return p.applyOnce(applyCtx, b, tb) }); err != nil {
			return err
		}
	}
	return nil
}

// aheadBatch is a batch taken from the queue while the target applied the
// one before it, with its transform output (nil if the transform failed:
// it is then transformed again in its turn, and fails there).
type aheadBatch struct {
	b, tb *change.Batch
}

// transformAhead takes the next queued batch, if there is one and no hold,
// and transforms it while the target applies the current one: a transform
// that does real work (views) then costs the pipeline max(transform,
// apply) per batch instead of their sum. The batch counts as in flight
// from now on (seen, and Pause waits for it), exactly as if the writer
// had started applying it. Wait for the returned channel before the next
// batch is taken; it is nil when nothing was taken.
func (p *Pipeline) transformAhead(ctx context.Context) chan *aheadBatch {
	if _, ok := p.opt.Transform.(Identity); ok || p.ahead != nil {
		return nil
	}
	if pg, ok := p.opt.Transform.(Pager); ok && pg.Pending() {
		return nil // its pages come before any later batch
	}
	p.mu.Lock()
	if p.hold != nil {
		p.mu.Unlock()
		return nil
	}
	b := p.q.tryPop(p.opt.ApplyChanges, p.opt.ApplyBytes)
	if b == nil {
		p.mu.Unlock()
		return nil
	}
	p.noteSeenLocked(b)
	p.mu.Unlock()
	ch := make(chan *aheadBatch, 1)
	go func() {
		tb, err := p.opt.Transform.Transform(ctx, b)
		if err != nil {
			tb = nil
		}
		ch <- &aheadBatch{b: b, tb: tb}
	}()
	return ch
}

// applyOnce applies tb, the transform's output for the source batch b.
func (p *Pipeline) applyOnce(ctx context.Context, b, tb *change.Batch) error {
	start := p.opt.Now()
	ahead := p.transformAhead(ctx)
	var err error
	if len(tb.Changes) > 0 || len(tb.Snapshotted) > 0 || len(tb.Marks) > 0 {
		err = p.dst.Apply(ctx, tb)
	}
	if ahead != nil {
		p.ahead = <-ahead
	}
	if err != nil {
		return fmt.Errorf("apply batch of %d changes: %w", len(tb.Changes), err)
	}
	// The target committed: only now may the transform forget and the
	// source confirm.
	if b.Ack > 0 {
		p.opt.Transform.Confirm(b.Ack)
		p.src.Confirm(b.Ack)
	}
	now := p.opt.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Batches++
	p.stats.Applied += int64(len(tb.Changes))
	if b.Ack > p.stats.Confirmed {
		p.stats.Confirmed = b.Ack
	}
	if n := len(tb.Changes); n > 0 {
		if d := now.Sub(start).Seconds(); d > 0 {
			p.stats.ChangesPerSecond = float64(n) / d
		}
		p.stats.LastApply = now
	}
	// Per-table figures, looked up once per run of one table's changes: this
	// loop sees every change, so it must stay cheap.
	var (
		newest  time.Time
		lastTbl *change.Table
		ts      *TableStats
		last    *change.Change
	)
	flush := func() {
		if ts != nil && last != nil {
			ts.AppliedLSN = last.Pos.String()
			ts.LastAppliedAt = now
		}
	}
	for i := range tb.Changes {
		c := &tb.Changes[i]
		if c.Table != lastTbl {
			flush()
			lastTbl, ts = c.Table, p.table(c.Table.ID().String())
		}
		last = c
		ts.Changes++
		if c.Op == change.OpRead {
			ts.SnapshotRows++
			continue
		}
		if c.CommitTime.After(newest) {
			newest = c.CommitTime
		}
		if c.CommitTime.After(ts.LastCommit) {
			ts.LastCommit = c.CommitTime
		}
	}
	flush()
	for _, s := range tb.Snapshotted {
		ts := p.table(s.Table.ID().String())
		ts.Snapshotted = true
	}
	if !newest.IsZero() {
		p.stats.LagSeconds = now.Sub(newest).Seconds()
	}
	return nil
}

func (p *Pipeline) setPhase(ph Phase) {
	p.mu.Lock()
	p.stats.Phase = ph
	p.mu.Unlock()
}
