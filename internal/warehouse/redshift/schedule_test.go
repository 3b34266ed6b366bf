package redshift

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// failingConn refuses every statement, as an unreachable Redshift does.
type failingConn struct{ calls int }

func (c *failingConn) Exec(context.Context, string) error {
	c.calls++
	return errors.New("connection refused")
}
func (c *failingConn) ExecTx(context.Context, []string) error {
	c.calls++
	return errors.New("connection refused")
}
func (c *failingConn) Query(context.Context, string) ([][]*string, error) {
	c.calls++
	return nil, errors.New("connection refused")
}

// A failed merge does not end the schedule: each run is reported with its
// error, at once and then every interval, until the context ends.
func TestScheduleReportsEachRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPlan(t, seedConfig(Redshift, customers()))
		conn := &failingConn{}
		var runs []MergeRun
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute+time.Second)
		defer cancel()
		begin := time.Now()
		err := Schedule(ctx, conn, p, ScheduleOptions{Every: time.Minute, Ran: func(_ context.Context, r MergeRun) { runs = append(runs, r) }})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Schedule = %v, want the context's deadline", err)
		}
		if len(runs) != 3 {
			t.Fatalf("%d runs in 2m1s every minute, want 3 (now, 1m, 2m)", len(runs))
		}
		for i, r := range runs {
			if r.Err == nil {
				t.Errorf("run %d has no error on a refusing connection", i)
			}
			if want := begin.Add(time.Duration(i) * time.Minute); !r.Start.Equal(want) {
				t.Errorf("run %d started at %s, want %s", i, r.Start.Sub(begin), want.Sub(begin))
			}
		}
	})
}

// A plan without tables merges nothing and succeeds.
func TestScheduleSuccessfulRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var runs []MergeRun
		_ = Schedule(ctx, &failingConn{}, &Plan{}, ScheduleOptions{Every: time.Minute, Ran: func(_ context.Context, r MergeRun) { runs = append(runs, r) }})
		if len(runs) != 1 || runs[0].Err != nil {
			t.Errorf("runs %+v, want one successful run", runs)
		}
	})
}
