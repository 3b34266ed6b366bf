package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// permanent marks errors that reconnecting cannot cure.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Stream emits changes from the slot's confirmed position onward until ctx
// ends (it then returns ctx.Err()) or an error that reconnecting cannot
// cure. Lost connections are retried with backoff; the server resumes from
// the slot's confirmed position, so a transaction cut short is sent again
// whole (duplicates, never loss).
func (s *Source) Stream(ctx context.Context, emit pipeline.Emit) error {
	if err := s.usable(); err != nil {
		return err
	}
	const minBackoff, maxBackoff = 100 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	for {
		// Re-snapshots left from an earlier session go first; a session
		// that finds a table needing one ends, hands over what it decoded
		// (without that table's changes) with the table's Reset, and the
		// next session resumes from the slot's confirmed position.
		var st *streamer
		err := s.resnapshot(ctx, nil, emit)
		if err == nil {
			st = &streamer{s: s, emit: emit, rels: map[uint32]*tableMeta{}}
			err = st.run(ctx)
			var need *needResnapshot
			if errors.As(err, &need) && ctx.Err() == nil {
				s.addResnapshot(need.tables)
				if err = s.resnapshot(ctx, st.undelivered(need.tables), emit); err == nil {
					backoff = minBackoff
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) {
			return fmt.Errorf("stream from slot %s: %w", s.cfg.Slot, err)
		}
		if st != nil && st.progressed {
			backoff = minBackoff
		}
		s.log.Warn("replication connection lost, reconnecting", "slot", s.cfg.Slot, "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func retryable(err error) bool {
	var p *permanent
	if errors.As(err, &p) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "57P"),
			pgErr.Code == "55006", // the slot is still held by a walsender that has not noticed its client left
			pgErr.Code == "53300": // no free WAL sender, perhaps for the same reason
			return true
		}
		return false
	}
	return true // network errors, EOF, timeouts
}

// streamer is one replication session.
type streamer struct {
	s    *Source
	emit pipeline.Emit
	conn *pgconn.PgConn
	meta *pgx.Conn
	rels map[uint32]*tableMeta     // nil entry: relation not mirrored
	need map[change.TableID]string // tables found to need a re-snapshot, at the transaction's end

	base      change.LSN // the slot's confirmed position when the session started
	received  change.LSN // reported as the write position
	sentFlush change.LSN

	inTxn      bool
	finalLSN   change.LSN
	xid        uint32
	commitTime time.Time

	safe    change.LSN // end of the last whole transaction (or idle keepalive position) seen
	lastAck change.LSN // the last Ack emitted
	// checked is the WAL position before the last catalog check that found
	// nothing to re-snapshot: Acks stay at or before it, so the slot never
	// passes a change that sends no row changes (catalog.go) before a check
	// has seen it, and a restart still finds it (checkStartup).
	checked change.LSN

	batch        *change.Batch
	bytes        int
	pendingSince time.Time
	lastEmit     time.Time
	progressed   bool
}

func (st *streamer) run(ctx context.Context) error {
	s := st.s
	var err error
	if st.meta, err = s.connect(ctx); err != nil {
		return err
	}
	defer st.meta.Close(context.Background())
	var confirmed string
	err = st.meta.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return &permanent{fmt.Errorf("replication slot %s does not exist: run setup (Prepare) to create it; if it was dropped, the mirror must be snapshotted again", s.cfg.Slot)}
	}
	if err != nil {
		return fmt.Errorf("read slot %s: %w", s.cfg.Slot, err)
	}
	if st.base, err = change.ParseLSN(confirmed); err != nil {
		return &permanent{err}
	}
	if err := st.checkCatalog(ctx); err != nil {
		return err
	}
	if st.conn, err = s.connectReplication(ctx); err != nil {
		return err
	}
	defer st.conn.Close(context.Background())
	pubArg := "publication_names " + change.QuoteLiteral(change.QuoteIdent(s.cfg.Publication))
	err = pglogrepl.StartReplication(ctx, st.conn, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", pubArg},
	})
	if err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	s.log.Info("streaming", "slot", s.cfg.Slot, "from", st.base.String())
	// Cancelling ctx wakes a blocked read; the loop then sees ctx done.
	stopWake := context.AfterFunc(ctx, func() { _ = st.conn.Conn().SetReadDeadline(time.Now()) })
	defer stopWake()

	st.batch = &change.Batch{}
	st.lastEmit = time.Now()
	interval, flush := s.cfg.StatusInterval, s.cfg.FlushInterval
	nextStatus := time.Now()
	nextCheck := time.Now().Add(s.cfg.CheckInterval)
	// idle is set when a read found nothing to read for idleFlush: a batch
	// that ends at a transaction boundary then goes out at once instead of
	// waiting out the flush interval, which keeps latency low when changes
	// trickle in and batches large when they pour in.
	idle := false
	for {
		now := time.Now()
		if ctx.Err() != nil {
			_ = st.sendStatus(false) // hand over what was confirmed before leaving
			return ctx.Err()
		}
		if !now.Before(nextStatus) {
			if err := st.sendStatus(false); err != nil {
				return err
			}
			nextStatus = now.Add(interval)
		}
		if !now.Before(nextCheck) && !st.inTxn {
			// Between transactions only: a session never ends inside one.
			if err := st.checkCatalog(ctx); err != nil {
				return err
			}
			nextCheck = time.Now().Add(s.cfg.CheckInterval)
		}
		pending := len(st.batch.Changes) > 0
		if pending && (now.Sub(st.pendingSince) >= flush || (idle && !st.inTxn)) {
			if err := st.flush(ctx); err != nil {
				return err
			}
			pending = false
		} else if !pending && !st.inTxn && st.ackable() > st.lastAck && now.Sub(st.lastEmit) >= flush {
			// Idle: let the slot move past WAL that touches no mirrored table.
			if err := st.flush(ctx); err != nil {
				return err
			}
		}
		idle = false
		wake := nextStatus
		if !st.inTxn {
			wake = minTime(wake, nextCheck)
		}
		if pending {
			wake = minTime(wake, st.pendingSince.Add(flush))
			if !st.inTxn {
				wake = minTime(wake, now.Add(idleFlush))
			}
		} else if !st.inTxn && st.ackable() > st.lastAck {
			wake = minTime(wake, st.lastEmit.Add(flush))
		}
		_ = st.conn.Conn().SetReadDeadline(wake)
		if ctx.Err() != nil {
			continue
		}
		msg, err := st.conn.ReceiveMessage(context.Background())
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				idle = true
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return &permanent{fmt.Errorf("parse keepalive: %w", err)}
				}
				end := change.LSN(ka.ServerWALEnd)
				st.received = max(st.received, end)
				if !st.inTxn {
					st.safe = max(st.safe, end)
				}
				if ka.ReplyRequested {
					if err := st.sendStatus(false); err != nil {
						return err
					}
					nextStatus = time.Now().Add(interval)
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return &permanent{fmt.Errorf("parse XLogData: %w", err)}
				}
				st.received = max(st.received, change.LSN(xld.WALStart))
				st.progressed = true
				if err := st.handle(ctx, change.LSN(xld.WALStart), xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// handle decodes one pgoutput message.
func (st *streamer) handle(ctx context.Context, lsn change.LSN, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case 'I', 'U', 'D':
		msg := string(data) // values are substrings of this one copy
		r, ok, err := decodeRow(msg, st.lookup)
		if err != nil {
			return &permanent{fmt.Errorf("decode %c message at %s: %w", data[0], lsn, err)}
		}
		if !ok {
			return nil
		}
		rel := st.rels[r.relid]
		if rel.before(st.finalLSN) || st.need[rel.table.ID()] != "" {
			return nil
		}
		return st.add(ctx, change.Change{Op: r.op, Table: rel.table, Before: r.before, After: r.after,
			Pos: change.Position{CommitLSN: st.finalLSN, LSN: lsn}, TxID: st.xid, CommitTime: st.commitTime})
	case 'B':
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return &permanent{fmt.Errorf("decode begin at %s: %w", lsn, err)}
		}
		st.inTxn, st.finalLSN, st.xid, st.commitTime = true, change.LSN(m.FinalLSN), m.Xid, m.CommitTime.UTC()
	case 'C':
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return &permanent{fmt.Errorf("decode commit at %s: %w", lsn, err)}
		}
		st.inTxn = false
		st.safe = max(st.safe, change.LSN(m.TransactionEndLSN))
		if len(st.need) > 0 {
			return st.checkCatalog(ctx) // ends the session with them
		}
	case 'R':
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return &permanent{fmt.Errorf("decode relation at %s: %w", lsn, err)}
		}
		return st.relation(ctx, &m)
	case 'T':
		var m pglogrepl.TruncateMessage
		if err := m.Decode(data[1:]); err != nil {
			return &permanent{fmt.Errorf("decode truncate at %s: %w", lsn, err)}
		}
		for _, relid := range m.RelationIDs {
			rel := st.rels[relid]
			if rel == nil || rel.before(st.finalLSN) || st.need[rel.table.ID()] != "" {
				continue
			}
			err := st.add(ctx, change.Change{Op: change.OpTruncate, Table: rel.table,
				Pos: change.Position{CommitLSN: st.finalLSN, LSN: lsn}, TxID: st.xid, CommitTime: st.commitTime})
			if err != nil {
				return err
			}
		}
	}
	// Type, origin and logical decoding messages carry nothing to mirror.
	return nil
}

func (st *streamer) lookup(relid uint32) []*typeInfo {
	if m := st.rels[relid]; m != nil {
		return m.types
	}
	return nil
}

func (st *streamer) add(ctx context.Context, c change.Change) error {
	if len(st.batch.Changes) == 0 {
		st.pendingSince = time.Now()
	}
	st.batch.Changes = append(st.batch.Changes, c)
	st.bytes += c.Size()
	if len(st.batch.Changes) >= st.s.cfg.BatchChanges || st.bytes >= st.s.cfg.BatchBytes {
		return st.flush(ctx)
	}
	return nil
}

// flush emits the current batch. While the pipeline blocks (back-pressure),
// status updates keep going out so the server does not time the session out.
func (st *streamer) flush(ctx context.Context) error {
	b := st.batch
	if a := st.ackable(); a > st.lastAck {
		b.Ack = a
		st.lastAck = a
	}
	if len(b.Changes) == 0 && b.Ack == 0 {
		return nil
	}
	st.batch = &change.Batch{Changes: make([]change.Change, 0, min(cap(b.Changes), st.s.cfg.BatchChanges))}
	st.bytes = 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(st.s.cfg.StatusInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = st.sendStatus(false)
			}
		}
	}()
	err := st.emit(ctx, b)
	close(stop)
	<-done
	st.lastEmit = time.Now()
	if err != nil {
		return &permanent{fmt.Errorf("emit: %w", err)}
	}
	return nil
}

// sendStatus reports the confirmed position as flushed and applied; the
// write position is what was received. It never reports beyond Confirm.
func (st *streamer) sendStatus(reply bool) error {
	// Nor past what this session decoded: a position confirmed by an
	// earlier session's batches can lie ahead of a new session, which
	// decodes again from the slot's position; confirming it would let the
	// server drop catalog rows the new session still needs (after a
	// re-snapshot of a rewritten table: "pg_attribute catalog is missing
	// attributes").
	flushed := max(min(change.LSN(st.s.confirmed.Load()), st.safe), st.base)
	if flushed == 0 {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(max(st.received, flushed)),
		WALFlushPosition: pglogrepl.LSN(flushed),
		WALApplyPosition: pglogrepl.LSN(flushed),
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	if flushed > st.sentFlush {
		st.sentFlush = flushed
	}
	return nil
}

// relation handles a RELATION message: the first one for a table in a
// session binds it to the known schema; one whose columns differ builds a
// new schema version, which reports the schema change downstream, unless
// the change is one the stream cannot describe (catalog.go): then the
// session ends with the table to re-snapshot. A message in a transaction
// that committed before the table's last snapshot only serves to decode
// changes that are dropped (the snapshot holds them).
func (st *streamer) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	id := change.TableID{Schema: m.Namespace, Name: m.RelationName}
	cur := st.s.meta(id)
	if cur == nil {
		st.rels[m.RelationID] = nil
		return nil
	}
	cats, err := readCatalog(ctx, st.meta, []uint32{m.RelationID})
	if err != nil {
		return err
	}
	now := cats[m.RelationID]
	if now == nil { // dropped since: decode with the message alone
		now = &catalogState{files: map[uint32]relFile{}, cols: map[string]catColumn{}}
	}
	// Column numbers come from the catalog: a column dropped and added
	// again under the same name and type looks the same in the message.
	same := len(m.Columns) == len(cur.types)
	for i := 0; same && i < len(m.Columns); i++ {
		c := m.Columns[i]
		old := cur.table.Columns[i]
		num := now.cols[c.Name].num
		same = c.Name == old.Name && c.DataType == old.Type.OID && c.TypeModifier == cur.typmods[i] &&
			(old.Num == 0 || num == 0 || num == old.Num)
	}
	if same {
		st.rels[m.RelationID] = cur
		return nil
	}
	stale := cur.before(st.finalLSN)
	next := &tableMeta{relid: m.RelationID, keyNames: cur.keyNames, partitioned: cur.partitioned, cat: now,
		table: &change.Table{Schema: id.Schema, Name: id.Name, Version: cur.table.Version + 1}}
	next.snapAt.Store(cur.snapAt.Load())
	shape := make([]shapeCol, 0, len(m.Columns))
	for _, c := range m.Columns {
		ti, err := st.s.types.resolve(ctx, st.meta, c.DataType)
		if err != nil {
			return fmt.Errorf("column %s of %s: %w", c.Name, id, err)
		}
		var name string
		if err := st.meta.QueryRow(ctx, "SELECT format_type($1, $2)", c.DataType, c.TypeModifier).Scan(&name); err != nil {
			return fmt.Errorf("format type of %s.%s: %w", id, c.Name, err)
		}
		shape = append(shape, shapeCol{name: c.Name, typ: c.DataType, typmod: c.TypeModifier, typName: name})
		cc, ok := now.cols[c.Name]
		col := change.Column{Name: c.Name, Type: ti.changeType(name), Nullable: cc.nullable || !ok, Num: cc.num}
		if cc.missing && !stale {
			// attmissingval is the value rows that predate an added column
			// take (a "fast default"): they send no change, so the
			// warehouse must be told.
			if col.Missing, err = missingValue(cc.missVal, ti); err != nil {
				st.s.log.Warn("cannot read the default of an added column: rows that existed before it will hold NULL in the target until they change",
					"table", id.String(), "column", c.Name, "err", err)
			}
		}
		next.table.Columns = append(next.table.Columns, col)
		next.types = append(next.types, ti)
		next.typmods = append(next.typmods, c.TypeModifier)
	}
	keyErr := setKey(next.table, next.keyNames)
	if stale {
		st.rels[m.RelationID] = next
		return nil
	}
	st.s.mu.Lock()
	known := cur.cat
	st.s.mu.Unlock()
	if why, _ := unseen(cur, known, now, shape); why != "" {
		// The session ends at the transaction's commit, so that the Ack
		// covers the transaction whole and it is never decoded again
		// (re-decoding a transaction that rewrote a table, from a restart
		// point a snapshot's temporary slot left, fails on Postgres 15 with
		// "pg_attribute catalog is missing attributes"). The table's changes
		// until then are dropped: the snapshot holds them.
		if st.need == nil {
			st.need = map[change.TableID]string{}
		}
		st.need[id] = why
		st.rels[m.RelationID] = next
		return nil
	}
	if keyErr != nil {
		return &permanent{fmt.Errorf("schema change of %s: %w", id, keyErr)}
	}
	st.s.mu.Lock()
	if now := st.s.tables[id]; now == cur {
		st.s.tables[id] = next
	}
	st.s.mu.Unlock()
	st.rels[m.RelationID] = next
	st.s.log.Info("table schema changed", "table", id.String(), "version", next.table.Version, "columns", len(next.table.Columns))
	return nil
}

// idleFlush is how long the stream must be quiet after a transaction
// before a partial batch is sent (see idle in Stream).
const idleFlush = 5 * time.Millisecond

// missingValue decodes pg_attribute.attmissingval, a one-element array of
// the column's type in text form, into the column's value.
func missingValue(text string, ti *typeInfo) (*change.Value, error) {
	if ti.kind == change.KindArray {
		return nil, fmt.Errorf("array columns are not supported")
	}
	arr, err := parseArray(text, ti, ',')
	if err != nil {
		return nil, err
	}
	if len(arr.Elems) != 1 {
		return nil, fmt.Errorf("attmissingval %.40q has %d elements, want 1", text, len(arr.Elems))
	}
	v := arr.Elems[0]
	return &v, nil
}
