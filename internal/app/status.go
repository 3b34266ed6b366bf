package app

import (
	"context"
	"fmt"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/source/postgres"
)

// StatusReport is what `sluice status` shows, from the running process
// when there is one, else from the source and target directly.
type StatusReport struct {
	Pipeline  string      `json:"pipeline"`
	Running   bool        `json:"running"`
	Target    string      `json:"target"`
	Slot      *SlotStatus `json:"slot,omitempty"`
	SlotError string      `json:"slot_error,omitempty"`
	// Stats are the figures of the pipeline the source feeds (direct,
	// producer).
	Stats  *pipeline.Stats        `json:"stats,omitempty"`
	Tables map[string]TableStatus `json:"tables,omitempty"` // when not running: the target's state
	Stream any                    `json:"stream,omitempty"`
	// Consumer are the figures of the pipeline a stream's reader feeds,
	// when it runs: its queue, applies, tables and apply health (its
	// confirmed batch is the reader's token, no position).
	Consumer *pipeline.Stats `json:"consumer,omitempty"`
}

// SlotStatus is the replication slot's part of the status.
type SlotStatus struct {
	Name          string `json:"name"`
	Active        bool   `json:"active"`
	ConfirmedLSN  string `json:"confirmed_flush_lsn"`
	RestartLSN    string `json:"restart_lsn"`
	CurrentLSN    string `json:"current_wal_lsn"`
	RetainedBytes int64  `json:"retained_wal_bytes"`
	LagBytes      int64  `json:"lag_bytes"`
}

// TableStatus is a table's state in the target of a stopped pipeline.
type TableStatus struct {
	Snapshotted bool   `json:"snapshotted"`
	Applied     string `json:"applied_position"`
}

func slotReport(s postgres.Status) *SlotStatus {
	return &SlotStatus{Name: s.Slot, Active: s.Active, ConfirmedLSN: s.ConfirmedFlush.String(), RestartLSN: s.RestartLSN.String(),
		CurrentLSN: s.CurrentLSN.String(), RetainedBytes: s.RetainedBytes, LagBytes: s.LagBytes}
}

// Status asks the running sluice of the pipeline for its status, or, when
// none runs, reads the slot and the target's state (Redshift: the records
// waiting for a merge) directly.
func Status(ctx context.Context, c *config.Config) (*StatusReport, error) {
	if cl, err := admin.Dial(ctx, c.AdminFile()); err == nil {
		var rep StatusReport
		if err := cl.Status(ctx, &rep); err != nil {
			return nil, fmt.Errorf("status from the running sluice: %w", err)
		}
		return &rep, nil
	}
	rep := &StatusReport{Pipeline: c.Pipeline, Target: config.Redact(c.Target.URL)}
	if c.Source.URL != "" {
		src, err := openSource(c, discardLog())
		if err != nil {
			return nil, err
		}
		defer src.Close()
		if st, err := src.Status(ctx); err == nil {
			rep.Slot = slotReport(st)
		} else {
			rep.SlotError = err.Error()
		}
	}
	if c.IsRedshift() && c.Stream.Role != "producer" {
		rep.Stream = redshiftStoppedStatus(ctx, c)
	} else if c.Stream == nil || c.Stream.Role != "producer" {
		tgt, err := openTargetReadOnly(ctx, c, discardLog())
		if err != nil {
			return nil, err
		}
		defer tgt.Close()
		st, err := tgt.State(ctx)
		if err != nil {
			return nil, fmt.Errorf("read target state: %w", err)
		}
		rep.Tables = map[string]TableStatus{}
		for id, s := range st {
			rep.Tables[id.String()] = TableStatus{Snapshotted: s.Snapshotted, Applied: s.Applied.String()}
		}
	}
	return rep, nil
}

// HumanBytes writes n in B, KiB, MiB or GiB.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
