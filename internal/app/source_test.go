package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/source/postgres"
)

type fakeSlot struct {
	retained []int64 // per read; an error after the last
}

func (s *fakeSlot) Status(context.Context) (postgres.Status, error) {
	if len(s.retained) == 0 {
		return postgres.Status{}, errors.New("connection refused")
	}
	n := s.retained[0]
	s.retained = s.retained[1:]
	return postgres.Status{Slot: "sluice_p", RetainedBytes: n}, nil
}

// The retained-WAL watch logs an error each minute the slot holds more
// than the limit, and only a warning when the slot cannot be read.
func TestWatchWAL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		log := slog.New(slog.NewTextHandler(&out, nil))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			watchWAL(ctx, &fakeSlot{retained: []int64{10, 2 << 30, 3 << 30}}, config.Bytes(1<<30), log)
			close(done)
		}()
		time.Sleep(4*walWatchEvery + time.Second)
		cancel()
		<-done
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || strings.Count(out.String(), "level=ERROR") != 2 || !strings.Contains(lines[2], "level=WARN") {
			t.Errorf("log of four reads (under, over, over, failed):\n%s", out.String())
		}
		if !strings.Contains(lines[0], "retained_bytes=2147483648") || !strings.Contains(lines[0], "limit=1GiB") {
			t.Errorf("the error names neither the figure nor the limit: %s", lines[0])
		}
	})
}
