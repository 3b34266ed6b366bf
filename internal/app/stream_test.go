package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

type refusingApplier struct{ fails int }

func (a *refusingApplier) ApplyStream(context.Context, *change.Batch, []warehouse.StreamMark) error {
	if a.fails > 0 {
		a.fails--
		return &pipeline.TargetError{Class: pipeline.Permanent, Table: "public.t", Err: errors.New("check constraint")}
	}
	return nil
}

func (a *refusingApplier) StreamMarks(context.Context, string) (map[string]string, error) {
	return nil, nil
}

// The Kinesis consumer's applies are retried, not ended, while the target
// refuses them; a run that ends stops the retrying.
func TestConsumerRetriesRefusedBatch(t *testing.T) {
	instant := func(context.Context, time.Duration) error { return nil }
	r := &pipeline.Retrier{Backoff: pipeline.Backoff{Sleep: instant}}
	a := &retryingApplier{streamApplier: &refusingApplier{fails: 2}, run: context.Background(), retry: r}
	if err := a.ApplyStream(context.Background(), &change.Batch{}, nil); err != nil {
		t.Fatalf("ApplyStream = %v, want it applied on the third attempt", err)
	}
	if h := r.Health(); h.Stall != nil || len(h.Failures) != 1 || h.Failures[0].Count != 2 {
		t.Errorf("health %+v", h)
	}
	run, stop := context.WithCancel(context.Background())
	stop()
	a = &retryingApplier{streamApplier: &refusingApplier{fails: 100}, run: run, retry: &pipeline.Retrier{}}
	if err := a.ApplyStream(context.Background(), &change.Batch{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("ApplyStream after the run ended = %v, want context.Canceled", err)
	}
}
