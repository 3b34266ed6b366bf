package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// Teardown drops exactly what sluice created for the pipeline, as recorded
// in the publication's comment: the slot (if sluice created it) and the
// publication (if sluice created it). A slot or publication the user made
// is never dropped. A slot that is in use is left alone with an error: stop
// sluice first. It returns the names of what it removed.
func Teardown(ctx context.Context, cfg Config) (removed []string, err error) {
	cfg.setDefaults()
	if err := checkSlotName(cfg.Slot); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg}
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	pub, slot := cfg.Publication, cfg.Slot
	var comment string
	err = conn.QueryRow(ctx, `SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_catalog.pg_publication WHERE pubname = $1`, pub).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil // nothing recorded, nothing to remove
	}
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", pub, err)
	}
	own := parseOwnership(comment)
	if own.slot != "" && own.slot == slot {
		var active bool
		var pid *int32
		err := conn.QueryRow(ctx, `SELECT active, active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &pid)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Already gone.
		case err != nil:
			return removed, fmt.Errorf("read slot %s: %w", slot, err)
		case active:
			p := int32(0)
			if pid != nil {
				p = *pid
			}
			return removed, fmt.Errorf("replication slot %s is in use by server process %d: stop sluice (or the client reading it) first, then run teardown again: %w", slot, p, ErrSlotActive)
		default:
			if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_drop_replication_slot($1)", slot); err != nil {
				return removed, fmt.Errorf("drop replication slot %s: %w", slot, err)
			}
			removed = append(removed, "replication slot "+slot)
		}
	}
	switch {
	case own.pubOurs:
		if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+change.QuoteIdent(pub)); err != nil {
			return removed, fmt.Errorf("drop publication %s: %w", pub, err)
		}
		removed = append(removed, "publication "+pub)
	case own.slot != "":
		// Not our publication: take back only the line sluice added.
		c := "NULL"
		if own.userNotes != "" {
			c = change.QuoteLiteral(own.userNotes)
		}
		if _, err := conn.Exec(ctx, "COMMENT ON PUBLICATION "+change.QuoteIdent(pub)+" IS "+c); err != nil {
			return removed, fmt.Errorf("restore comment of publication %s: %w", pub, err)
		}
	}
	return removed, nil
}
