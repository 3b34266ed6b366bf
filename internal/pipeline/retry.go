package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// Backoff spaces the attempts at a batch the target refused: Min after the
// first failure, doubling up to Max.
type Backoff struct {
	Min time.Duration // default 1s
	Max time.Duration // default 5 minutes
	// Sleep waits d or until ctx ends (then returning ctx's error); tests
	// replace it. The default uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (b *Backoff) defaults() {
	if b.Min <= 0 {
		b.Min = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.Sleep == nil {
		b.Sleep = sleep
	}
}

// Delay is the wait after the n-th failure in a row (n ≥ 1).
func (b Backoff) Delay(n int) time.Duration {
	b.defaults()
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Stall is a batch the target keeps refusing, as status shows it.
type Stall struct {
	Since     time.Time `json:"since"`
	Attempts  int       `json:"attempts"`
	NextRetry time.Time `json:"next_retry"`
	Class     Class     `json:"class"`
	// Table is the source table the failure is about (as in the tables
	// list); TargetTable is the table the warehouse named, when it differs.
	Table       string `json:"table,omitempty"`
	TargetTable string `json:"target_table,omitempty"`
	Column      string `json:"column,omitempty"`
	Constraint  string `json:"constraint,omitempty"`
	Fix         string `json:"fix,omitempty"`
	Error       string `json:"error"`
	// First is the position of the first change of the refused batch:
	// nothing from it on is confirmed to the source.
	First string `json:"first_position,omitempty"`
}

// FailureCount is how often applies to one table failed, by class.
type FailureCount struct {
	Table string `json:"table"`
	Class Class  `json:"class"`
	Count int64  `json:"count"`
}

// Health is a Retrier's report: the current stall, if any, and the
// failures counted since start.
type Health struct {
	Stall    *Stall         `json:"stall,omitempty"`
	Failures []FailureCount `json:"apply_failures,omitempty"`
}

// Retrier applies a batch until the target takes it, the run stops, or
// the target fails fatally. Meanwhile nothing past the batch is
// confirmed (the caller confirms only after success), the stall is
// reported, every failed attempt is counted per table and class, and each
// distinct error is logged once. The zero value is usable; set the fields
// before the first Do.
type Retrier struct {
	Backoff Backoff
	Logger  *slog.Logger // default: discard
	Now     func() time.Time
	// What names the stage in logs ("apply", "apply from the stream").
	What string

	once     sync.Once
	mu       sync.Mutex
	stall    *Stall
	stallCh  chan struct{} // closed while stalled
	failures map[FailureCount]int64
	logged   string // the last error logged, so a repeat is not
	wake     context.CancelFunc
}

func (r *Retrier) init() {
	r.once.Do(func() {
		r.Backoff.defaults()
		if r.Logger == nil {
			r.Logger = slog.New(slog.DiscardHandler)
		}
		if r.Now == nil {
			r.Now = time.Now
		}
		if r.What == "" {
			r.What = "apply"
		}
		r.stallCh = make(chan struct{})
		r.failures = map[FailureCount]int64{}
	})
}

// Do runs apply for b until it succeeds (nil), ctx ends (ctx's error), or
// it fails with a Fatal TargetError (that error).
func (r *Retrier) Do(ctx context.Context, b *change.Batch, apply func() error) error {
	r.init()
	for attempt := 1; ; attempt++ {
		err := apply()
		if err == nil {
			r.recovered()
			return nil
		}
		d := describe(err)
		if d.Class == Fatal {
			r.fail(b, d, err, attempt, time.Time{})
			return err
		}
		wait := r.Backoff.Delay(attempt)
		r.fail(b, d, err, attempt, r.Now().Add(wait))
		wctx, wake := context.WithCancel(ctx)
		r.mu.Lock()
		r.wake = wake
		r.mu.Unlock()
		_ = r.Backoff.Sleep(wctx, wait) // an error here is ctx's, or RetryNow's wake-up
		wake()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// RetryNow cuts the wait before the next attempt short (a person fixed the
// target and does not want to wait for the backoff).
func (r *Retrier) RetryNow() bool {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall == nil || r.wake == nil {
		return false
	}
	r.wake()
	return true
}

func (r *Retrier) fail(b *change.Batch, d TargetError, err error, attempt int, next time.Time) {
	table, target := sourceTable(b, d.Table)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[FailureCount{Table: table, Class: d.Class}]++
	if r.stall == nil {
		r.stall = &Stall{Since: r.Now()}
		close(r.stallCh)
	}
	s := r.stall
	s.Attempts, s.NextRetry, s.Class = attempt, next, d.Class
	s.Table, s.TargetTable, s.Column, s.Constraint, s.Fix = table, target, d.Column, d.Constraint, d.Fix
	s.Error = err.Error()
	s.First = ""
	if len(b.Changes) > 0 {
		s.First = b.Changes[0].Pos.String()
	}
	// The same refusal reads differently from one attempt to the next (a
	// staging table's name, the batch's size): what it is about and its
	// root cause say whether it is the same.
	key := string(d.Class) + "|" + table + "|" + d.Column + "|" + d.Constraint + "|" + root(err).Error()
	if key == r.logged {
		return
	}
	r.logged = key
	level, msg := slog.LevelWarn, r.What+" failed; retrying with backoff, nothing past the batch is confirmed"
	switch d.Class {
	case Permanent:
		level, msg = slog.LevelError, r.What+" refused by the target: it will not succeed until the target is fixed; retrying with backoff, nothing past the batch is confirmed"
	case Fatal:
		level, msg = slog.LevelError, r.What+" failed and the target cannot be used any more by this process: stopping, nothing past the batch is confirmed"
	}
	attrs := []any{"class", d.Class, "table", table}
	for _, kv := range [][2]string{{"target_table", target}, {"column", d.Column}, {"constraint", d.Constraint}, {"fix", d.Fix}, {"first_position", s.First}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0], kv[1])
		}
	}
	if !next.IsZero() {
		attrs = append(attrs, "retry_in", next.Sub(r.Now()).Round(time.Millisecond))
	}
	attrs = append(attrs, "error", s.Error)
	r.Logger.Log(context.Background(), level, msg, attrs...)
}

func (r *Retrier) recovered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall == nil {
		return
	}
	r.Logger.Info(r.What+" succeeded again: resumed", "attempts", r.stall.Attempts+1,
		"stalled_for", r.Now().Sub(r.stall.Since).Round(time.Millisecond), "table", r.stall.Table)
	r.stall, r.logged, r.wake = nil, "", nil
	r.stallCh = make(chan struct{})
}

// root is the innermost error err wraps.
func root(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// Health returns the current stall and the failure counts.
func (r *Retrier) Health() Health {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	var h Health
	if r.stall != nil {
		s := *r.stall
		h.Stall = &s
	}
	for k, n := range r.failures {
		k.Count = n
		h.Failures = append(h.Failures, k)
	}
	sort.Slice(h.Failures, func(i, j int) bool {
		if h.Failures[i].Table != h.Failures[j].Table {
			return h.Failures[i].Table < h.Failures[j].Table
		}
		return h.Failures[i].Class < h.Failures[j].Class
	})
	return h
}

// stalled returns a channel closed while the retrier is stalled.
func (r *Retrier) stalled() <-chan struct{} {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stallCh
}

// sourceTable names the source table a failure is about: the batch's table
// that the warehouse's table name stands for (the target schema may differ
// from the source's), or the batch's only table when the warehouse named
// none. target is the warehouse's name when it is not the source's.
func sourceTable(b *change.Batch, named string) (table, target string) {
	var only *change.Table
	several := false
	for i := range b.Changes {
		t := b.Changes[i].Table
		if t == nil {
			continue
		}
		if named != "" {
			if t.ID().String() == named {
				return named, ""
			}
			if only == nil && (t.Name == named || strings.HasSuffix(named, "."+t.Name)) {
				only = t
			}
			continue
		}
		if only != nil && only != t && only.ID() != t.ID() {
			several = true
		}
		if only == nil {
			only = t
		}
	}
	if named != "" {
		if only != nil {
			return only.ID().String(), named
		}
		return named, ""
	}
	if only == nil || several {
		return "", ""
	}
	return only.ID().String(), ""
}
