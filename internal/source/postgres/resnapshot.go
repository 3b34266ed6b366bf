package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// A re-snapshot while streaming, of a table whose change the stream cannot
// describe (catalog.go). The streaming session that finds it at position X
// ends; then, in order:
//
//  1. A temporary slot exports a snapshot at P (after X) and the table's
//     schema is read again inside it.
//  2. One batch goes downstream with everything the session decoded and had
//     not emitted, except the table's own changes (the snapshot holds
//     them), the Ack that covers it, and the table in Reset: the pipeline
//     empties the table in the target before applying the batch. Earlier
//     batches are applied before it (the queue never merges a Reset batch
//     into earlier ones).
//  3. The table's rows (op r at P) follow, and its SnapshotDone at P.
//  4. A new session resumes from the slot's confirmed position. The other
//     tables' changes already applied are replays the target skips; the
//     table's changes committed before P are dropped here (tableMeta.snapAt)
//     and would be skipped by the target too (its applied position is P).
//
// Other tables wait while the snapshot runs. A crash at any point converges:
// before the Reset is applied the slot has not passed the change, so a
// restart finds it again (the Ack is held back to the last catalog check,
// and checkStartup looks at what changed since the slot's position); after
// it, the target holds the table as not snapshotted, and a restart
// snapshots it. A failed snapshot stays pending and is retried before the
// next session streams.

// needResnapshot ends a streaming session: the tables need a re-snapshot,
// for the reasons given.
type needResnapshot struct {
	tables map[change.TableID]string
}

func (e *needResnapshot) Error() string {
	var parts []string
	for _, id := range slices.SortedFunc(maps.Keys(e.tables), cmpID) {
		parts = append(parts, fmt.Sprintf("%s: %s", id, e.tables[id]))
	}
	return "re-snapshot needed: " + strings.Join(parts, "; ")
}

func cmpID(a, b change.TableID) int { return strings.Compare(a.String(), b.String()) }

func (s *Source) addResnapshot(tables map[change.TableID]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resnap == nil {
		s.resnap = map[change.TableID]string{}
	}
	for id, why := range tables {
		if _, ok := s.resnap[id]; !ok {
			s.resnap[id] = why
		}
	}
}

// resnapshot snapshots the pending tables again, emitting pre (changes
// decoded before, possibly nil) with their Reset first.
func (s *Source) resnapshot(ctx context.Context, pre *change.Batch, emit pipeline.Emit) error {
	s.mu.Lock()
	pending := maps.Clone(s.resnap)
	s.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	var metas []*tableMeta
	for _, id := range slices.SortedFunc(maps.Keys(pending), cmpID) {
		m := s.meta(id)
		if m == nil {
			continue
		}
		s.log.Info(fmt.Sprintf("table %s: %s; re-snapshotting it", id, pending[id]), "table", id.String())
		metas = append(metas, m)
	}
	if pre == nil {
		pre = &change.Batch{}
	}
	if err := s.snapshot(ctx, metas, pre, emit); err != nil {
		return fmt.Errorf("re-snapshot: %w", err)
	}
	s.mu.Lock()
	for id := range pending {
		delete(s.resnap, id)
	}
	s.mu.Unlock()
	return nil
}

// undelivered is what the session decoded and did not emit, without the
// changes of tables (which their re-snapshot holds), with the Ack it earned.
func (st *streamer) undelivered(tables map[change.TableID]string) *change.Batch {
	b := st.batch
	if b == nil {
		b = &change.Batch{}
	}
	b.Changes = slices.DeleteFunc(b.Changes, func(c change.Change) bool {
		_, ok := tables[c.Table.ID()]
		return ok
	})
	if a := st.ackable(); a > st.lastAck {
		b.Ack = a
		st.lastAck = a
	}
	st.batch = nil
	return b
}

// ackable is how far the slot may be confirmed once everything decoded so
// far is durable: the end of the last whole transaction, but not past the
// last catalog check.
func (st *streamer) ackable() change.LSN { return min(st.safe, st.checked) }

// checkCatalog compares the mirrored tables with the catalog (and, once per
// process, looks for changes made while sluice was stopped). A table that
// needs a re-snapshot ends the session; otherwise Acks may move up to the
// WAL position read before the check.
func (st *streamer) checkCatalog(ctx context.Context) error {
	s := st.s
	var w string
	if err := st.meta.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_insert_lsn()::text").Scan(&w); err != nil {
		return fmt.Errorf("read WAL position: %w", err)
	}
	at, err := change.ParseLSN(w)
	if err != nil {
		return &permanent{err}
	}
	s.mu.Lock()
	startup := !s.startChecked
	s.mu.Unlock()
	need := map[change.TableID]string{}
	if startup {
		if need, err = s.checkStartup(ctx, st.meta); err != nil {
			return err
		}
	}
	found, err := s.check(ctx, st.meta)
	if err != nil {
		return err
	}
	for _, m := range []map[change.TableID]string{found, st.need} {
		for id, why := range m {
			if _, ok := need[id]; !ok {
				need[id] = why
			}
		}
	}
	if startup {
		s.mu.Lock()
		s.startChecked = true
		s.mu.Unlock()
	}
	// Every table that needs a re-snapshot is in need, and the batch that
	// carries the Ack resets them: the Ack may pass the check's position.
	st.checked = max(st.checked, at)
	if len(need) > 0 {
		return &needResnapshot{tables: need}
	}
	return nil
}

// before reports whether a change committing at commit is held by the
// table's last snapshot (and is dropped).
func (m *tableMeta) before(commit change.LSN) bool {
	return commit < change.LSN(m.snapAt.Load())
}
