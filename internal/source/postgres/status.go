package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// Status is how far the slot is and how much WAL it holds back.
type Status struct {
	Slot           string
	Active         bool       // a replication connection is reading the slot now
	ConfirmedFlush change.LSN // everything before it is durable downstream
	RestartLSN     change.LSN // oldest WAL the slot still needs
	CurrentLSN     change.LSN // the server's current WAL insert position
	RetainedBytes  int64      // WAL kept on disk for the slot: CurrentLSN - RestartLSN
	LagBytes       int64      // WAL not yet confirmed: CurrentLSN - ConfirmedFlush
}

// Status reads the slot's state from the server.
func (s *Source) Status(ctx context.Context) (Status, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return Status{}, err
	}
	defer conn.Close(context.Background())
	st := Status{Slot: s.cfg.Slot}
	var confirmed, restart, current string
	err = conn.QueryRow(ctx, `SELECT active, coalesce(confirmed_flush_lsn::text, '0/0'), coalesce(restart_lsn::text, '0/0'),
		pg_current_wal_lsn()::text,
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).
		Scan(&st.Active, &confirmed, &restart, &current, &st.RetainedBytes, &st.LagBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("replication slot %s does not exist: run setup to create it", s.cfg.Slot)
	}
	if err != nil {
		return st, fmt.Errorf("read slot %s: %w", s.cfg.Slot, err)
	}
	for _, p := range []struct {
		s   string
		dst *change.LSN
	}{{confirmed, &st.ConfirmedFlush}, {restart, &st.RestartLSN}, {current, &st.CurrentLSN}} {
		if *p.dst, err = change.ParseLSN(p.s); err != nil {
			return st, err
		}
	}
	return st, nil
}
