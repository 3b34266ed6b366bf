package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// landingView is a stand-in for a Redshift streaming view (Kinesis or
// Kafka): each Refresh lands the records that arrived since the last one.
type landingView interface {
	Refresh(ctx context.Context, conn *pgx.Conn) (int, error)
}

// refresher refreshes a streaming view's stand-in every 200 ms, as Redshift's
// AUTO REFRESH would, until Stop; the first error stops it.
type refresher struct {
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

func startRefreshing(ctx context.Context, v landingView, conn *pgx.Conn) *refresher {
	rctx, stop := context.WithCancel(ctx)
	r := &refresher{stop: stop}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for rctx.Err() == nil {
			if _, err := v.Refresh(rctx, conn); err != nil && rctx.Err() == nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
			select {
			case <-rctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return r
}

// Failed returns the error that stopped the refreshes, if any.
func (r *refresher) Failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Stop ends the refreshes, waits for the last one and fails the test if
// one failed. It may be called more than once.
func (r *refresher) Stop(t *testing.T) {
	t.Helper()
	r.stop()
	r.wg.Wait()
	if err := r.Failed(); err != nil {
		t.Fatalf("refresh the landing table (the streaming view's stand-in): %v", err)
	}
}
