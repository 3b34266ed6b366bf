package postgres

import (
	"context"
	"time"

	"github.com/sluice-dev/sluice/internal/metrics"
)

// The slot's figures in /metrics.
var (
	slotRetained = &metrics.Family{Name: "sluice_slot_retained_wal_bytes", Help: "WAL the replication slot keeps on the source's disk.", Kind: metrics.Gauge, Labels: []string{"slot"}}
	slotLag      = &metrics.Family{Name: "sluice_slot_lag_bytes", Help: "WAL written at the source and not yet confirmed by sluice.", Kind: metrics.Gauge, Labels: []string{"slot"}}
	slotActive   = &metrics.Family{Name: "sluice_slot_active", Help: "1 when a replication connection reads the slot.", Kind: metrics.Gauge, Labels: []string{"slot"}}
)

var (
	_ metrics.Reporter = Status{}
	_ metrics.Reporter = (*Source)(nil)
)

// Report emits the slot's figures.
func (s Status) Report(emit metrics.Emit) {
	emit(slotRetained, float64(s.RetainedBytes), s.Slot)
	emit(slotLag, float64(s.LagBytes), s.Slot)
	active := 0.0
	if s.Active {
		active = 1
	}
	emit(slotActive, active, s.Slot)
}

// statusTimeout bounds the server round trip of a scrape.
const statusTimeout = 5 * time.Second

// Report reads the slot's state from the server and emits its figures;
// when the server cannot be asked, it emits none (status shows the
// error).
func (s *Source) Report(emit metrics.Emit) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	if st, err := s.Status(ctx); err == nil {
		st.Report(emit)
	}
}
