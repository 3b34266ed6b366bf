package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-dev/sluice/internal/change"
)

// Ownership is recorded in the publication's comment, the one place on the
// server that sluice can write beside the objects it creates. A publication
// sluice created says so in the first line; a slot sluice created for a
// publication it did not create is recorded in a line sluice appends (and
// Teardown removes) in that publication's comment.
const (
	ownerPubPrefix  = "created by sluice for pipeline "
	ownerSlotInfix  = "; slot "
	ownerSlotSuffix = " created by sluice"
	ownerLinePrefix = "[sluice] slot "
)

// ownership is what a publication comment says sluice created.
type ownership struct {
	pubOurs   bool   // the publication was created by sluice
	pipeline  string // the pipeline that created it
	slot      string // the slot sluice created, "" if none
	userNotes string // the comment without sluice's line (publications sluice did not create)
}

func parseOwnership(comment string) ownership {
	var o ownership
	if rest, ok := strings.CutPrefix(comment, ownerPubPrefix); ok {
		o.pubOurs = true
		pipe, slot, hasSlot := strings.Cut(rest, ownerSlotInfix)
		o.pipeline = pipe
		if hasSlot {
			o.slot = strings.TrimSuffix(slot, ownerSlotSuffix)
		}
		return o
	}
	lines := strings.Split(comment, "\n")
	var keep []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, ownerLinePrefix); ok {
			slot, pipe, _ := strings.Cut(rest, " created by sluice for pipeline ")
			o.slot, o.pipeline = slot, pipe
			continue
		}
		keep = append(keep, l)
	}
	o.userNotes = strings.Join(keep, "\n")
	return o
}

func (o ownership) comment(slotName string) string {
	if o.pubOurs {
		c := ownerPubPrefix + o.pipeline
		if o.slot != "" {
			c += ownerSlotInfix + o.slot + ownerSlotSuffix
		}
		return c
	}
	line := ownerLinePrefix + o.slot + " created by sluice for pipeline " + o.pipeline
	if o.userNotes == "" {
		return line
	}
	return o.userNotes + "\n" + line
}

// Prepare checks the server and the tables, creates or reuses the
// publication and the slot, and returns the tables' schemas in the order of
// Config.Tables. Every problem found is reported at once, each naming the
// object and the fix. Calling it again with more tables adds them to the
// publication (only when sluice created it).
func (s *Source) Prepare(ctx context.Context) ([]*change.Table, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())

	if err := checkServer(ctx, conn); err != nil {
		return nil, err
	}
	var (
		metas []*tableMeta
		errs  []error
	)
	for _, id := range s.cfg.Tables {
		m, err := s.loadTable(ctx, conn, id, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		metas = append(metas, m)
	}
	if len(errs) == 0 {
		errs = append(errs, checkNested(ctx, conn, metas))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := readCatalogs(ctx, conn, metas); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.roots = nil
	for _, m := range metas {
		if m.partitioned {
			s.roots = append(s.roots, m.table.ID().String())
		}
	}
	s.mu.Unlock()
	if err := s.ensurePublication(ctx, conn); err != nil {
		return nil, err
	}
	if err := s.checkPublishedAncestors(ctx, conn, metas); err != nil {
		return nil, err
	}
	if err := s.ensureSlot(ctx, conn); err != nil {
		return nil, err
	}
	out := make([]*change.Table, len(metas))
	s.mu.Lock()
	for i, m := range metas {
		if old := s.tables[m.table.ID()]; old != nil && old.table.SameShape(m.table) {
			m = old
		}
		s.tables[m.table.ID()] = m
		out[i] = m.table
	}
	s.mu.Unlock()
	return out, nil
}

func checkServer(ctx context.Context, conn *pgx.Conn) error {
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("wal_level is %q but logical replication needs \"logical\": run ALTER SYSTEM SET wal_level = logical and restart the server (on RDS/Aurora set rds.logical_replication = 1 in the parameter group): %w", walLevel, ErrWALLevel)
	}
	var (
		role             string
		super, repl, rds bool
	)
	err := conn.QueryRow(ctx, `SELECT current_user::text, r.rolsuper, r.rolreplication,
		EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_replication')
		  AND pg_has_role(current_user, 'rds_replication', 'member')
		FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`).Scan(&role, &super, &repl, &rds)
	if err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	if !super && !repl && !rds {
		return fmt.Errorf("role %s has no REPLICATION attribute, which logical replication needs: run ALTER ROLE %s WITH REPLICATION (on RDS/Aurora: GRANT rds_replication TO %s): %w",
			role, change.QuoteIdent(role), change.QuoteIdent(role), ErrNoReplication)
	}
	return nil
}

// loadTable reads a table's schema from the catalog and decides its key.
// With check set it also verifies privilege and replica identity.
func (s *Source) loadTable(ctx context.Context, conn *pgx.Conn, id change.TableID, check bool) (*tableMeta, error) {
	var (
		relid     uint32
		relkind   string
		ident     string
		canSelect bool
		db        string
	)
	err := conn.QueryRow(ctx, `SELECT c.oid, c.relkind::text, c.relreplident::text,
		has_table_privilege(c.oid, 'SELECT'), current_database()::text
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, id.Schema, id.Name).Scan(&relid, &relkind, &ident, &canSelect, &db)
	if errors.Is(err, pgx.ErrNoRows) {
		_ = conn.QueryRow(ctx, "SELECT current_database()::text").Scan(&db)
		return nil, fmt.Errorf("table %s does not exist in database %s: check the schema and name (names are case-sensitive; write \"Name\" for mixed case) or create the table: %w", id, db, ErrNoTable)
	}
	if err != nil {
		return nil, fmt.Errorf("look up table %s: %w", id, err)
	}
	if relkind != "r" && relkind != "p" {
		return nil, fmt.Errorf("%s is not a table (relkind %s): mirror a table or a partitioned table, not a view, sequence or foreign table: %w", id, relkind, ErrNoTable)
	}
	if check && !canSelect {
		var role string
		_ = conn.QueryRow(ctx, "SELECT current_user::text").Scan(&role)
		return nil, fmt.Errorf("role %s has no SELECT privilege on table %s, which the snapshot needs: run GRANT SELECT ON %s TO %s: %w", role, id, id.Quoted(), change.QuoteIdent(role), ErrNoPrivilege)
	}
	m := &tableMeta{relid: relid, partitioned: relkind == "p", table: &change.Table{Schema: id.Schema, Name: id.Name, Version: 1}}
	// Generated columns are left out: pgoutput does not send them (Postgres 15).
	rows, err := conn.Query(ctx, `SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, a.attnum::int
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, relid)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", id, err)
	}
	type col struct {
		name, typ string
		oid       uint32
		typmod    int32
		nullable  bool
		num       int
	}
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.name, &c.oid, &c.typmod, &c.typ, &c.nullable, &c.num); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s: %w", id, err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", id, err)
	}
	for _, c := range cols {
		ti, err := s.types.resolve(ctx, conn, c.oid)
		if err != nil {
			return nil, fmt.Errorf("column %s of %s: %w", c.name, id, err)
		}
		m.table.Columns = append(m.table.Columns, change.Column{Name: c.name, Type: ti.changeType(c.typ), Nullable: c.nullable, Num: c.num})
		m.types = append(m.types, ti)
		m.typmods = append(m.typmods, c.typmod)
	}
	pk, err := indexColumns(ctx, conn, relid, "indisprimary")
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s: %w", id, err)
	}
	declared := s.cfg.Keys[id]
	var leaves []leafIdent
	if m.partitioned {
		// Changes come from the partitions, each with its own replica
		// identity: a partitioned table's own setting carries nothing.
		if leaves, err = leafIdents(ctx, conn, relid); err != nil {
			return nil, fmt.Errorf("read partitions of %s: %w", id, err)
		}
		if len(leaves) > 0 && ident != "f" {
			full := true
			for _, l := range leaves {
				full = full && l.ident == "f"
			}
			if full {
				ident = "f"
			}
		}
	}
	switch {
	case ident == "n" && check:
		return nil, fmt.Errorf("table %s has REPLICA IDENTITY NOTHING, so its updates and deletes carry no key: run ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL): %w", id, id.Quoted(), ErrNoKey)
	case len(declared) > 0 && !slices.Equal(declared, pk):
		if ident != "f" && check {
			return nil, fmt.Errorf("table %s: the declared key (%s) needs REPLICA IDENTITY FULL so that updates and deletes carry the old row: run ALTER TABLE %s REPLICA IDENTITY FULL: %w", id, strings.Join(declared, ", "), id.Quoted(), ErrNoKey)
		}
		m.keyNames = declared
	case len(pk) > 0:
		m.keyNames = pk
	case ident == "i":
		if m.keyNames, err = indexColumns(ctx, conn, relid, "indisreplident"); err != nil {
			return nil, fmt.Errorf("read replica identity of %s: %w", id, err)
		}
	case ident == "f":
		// No key, but every update and delete carries the whole old row:
		// the table is mirrored as a multiset (change.Table.Keyless).
		m.keyNames = nil
	default:
		return nil, fmt.Errorf("table %s has no primary key, so its updates and deletes would not say which row they change: run ALTER TABLE %s REPLICA IDENTITY FULL to mirror it row for row (identical rows kept apart), or add a primary key (ALTER TABLE %s ADD PRIMARY KEY (...)), or declare its key in the pipeline and set REPLICA IDENTITY FULL: %w", id, id.Quoted(), id.Quoted(), ErrNoKey)
	}
	if err := setKey(m.table, m.keyNames); err != nil {
		return nil, err
	}
	if check {
		if err := checkLeaves(ctx, conn, m, pk, leaves); err != nil {
			return nil, err
		}
	}
	if len(declared) > 0 && check {
		// A key with NULLs cannot be merged on (NULL matches nothing) and
		// the warehouse declares its columns NOT NULL: refuse now rather
		// than fail at apply time.
		var nullable []string
		for _, k := range m.table.Key {
			if c := m.table.Columns[k]; c.Nullable {
				nullable = append(nullable, c.Name)
			}
		}
		if len(nullable) > 0 {
			return nil, fmt.Errorf("table %s: the declared key (%s) has nullable columns (%s): make them NOT NULL at the source (ALTER TABLE %s ALTER COLUMN %s SET NOT NULL), declare a key of NOT NULL columns, or declare no key to mirror the table row for row: %w",
				id, strings.Join(declared, ", "), strings.Join(nullable, ", "), id.Quoted(), change.QuoteIdent(nullable[0]), ErrNoKey)
		}
	}
	return m, nil
}

func setKey(t *change.Table, names []string) error {
	t.Key = t.Key[:0]
	for i := range t.Columns {
		t.Columns[i].Key = false
	}
	for _, n := range names {
		i := t.Column(n)
		if i < 0 {
			return fmt.Errorf("key column %q of table %s does not exist: declare the key with existing column names: %w", n, t.ID(), ErrNoKey)
		}
		t.Columns[i].Key = true
		t.Key = append(t.Key, i)
	}
	return nil
}

func indexColumns(ctx context.Context, conn *pgx.Conn, relid uint32, flag string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT a.attname::text
		FROM pg_catalog.pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.`+flag+` ORDER BY k.ord`, relid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (s *Source) ensurePublication(ctx context.Context, conn *pgx.Conn) error {
	pub := s.cfg.Publication
	var (
		exists  bool
		comment string
		allTabs bool
		viaRoot bool
	)
	err := conn.QueryRow(ctx, `SELECT true, coalesce(obj_description(p.oid, 'pg_publication'), ''), p.puballtables, p.pubviaroot
		FROM pg_catalog.pg_publication p WHERE p.pubname = $1`, pub).Scan(&exists, &comment, &allTabs, &viaRoot)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look up publication %s: %w", pub, err)
	}
	if !exists {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("create publication %s: %w", pub, err)
		}
		defer tx.Rollback(context.Background())
		names := make([]string, len(s.cfg.Tables))
		for i, id := range s.cfg.Tables {
			names[i] = id.Quoted()
		}
		own := ownership{pubOurs: true, pipeline: s.cfg.Pipeline}
		// Through the root: a partitioned table's changes are sent as the
		// root's, with its relation and schema, whichever partition holds
		// the row (plain tables, partitions named alone included, are not
		// affected).
		if _, err := tx.Exec(ctx, "CREATE PUBLICATION "+change.QuoteIdent(pub)+" FOR TABLE "+strings.Join(names, ", ")+" WITH (publish_via_partition_root = true)"); err != nil {
			return fmt.Errorf("create publication %s: %w%s", pub, err, privilegeHint(err, "the role needs CREATE on the database and ownership of the tables"))
		}
		if _, err := tx.Exec(ctx, "COMMENT ON PUBLICATION "+change.QuoteIdent(pub)+" IS "+change.QuoteLiteral(own.comment(""))); err != nil {
			return fmt.Errorf("record ownership of publication %s: %w", pub, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("create publication %s: %w", pub, err)
		}
		s.log.Info("created publication", "publication", pub)
		return nil
	}
	own := parseOwnership(comment)
	if !viaRoot {
		if roots := s.partitionedTables(); len(roots) > 0 {
			if !own.pubOurs {
				return fmt.Errorf("publication %s was not created by sluice and publishes partitioned tables (%s) through their partitions, whose changes sluice would not recognise: run ALTER PUBLICATION %s SET (publish_via_partition_root = true), or leave the publication to sluice: %w",
					pub, strings.Join(roots, ", "), change.QuoteIdent(pub), ErrForeignObjects)
			}
			// A slot already streaming sees the option from the point its
			// decoding reaches this statement: changes of plain tables are
			// sent as before, changes of partitions of a published
			// partitioned table as the root's from then on. The partitioned
			// tables are added just below and snapshotted after it, so no
			// earlier change of theirs is needed.
			if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+change.QuoteIdent(pub)+" SET (publish_via_partition_root = true)"); err != nil {
				return fmt.Errorf("set publish_via_partition_root on publication %s: %w", pub, err)
			}
			s.log.Info("publication now publishes partitioned tables through their root", "publication", pub)
		}
	}
	if allTabs {
		return nil
	}
	rows, err := conn.Query(ctx, `SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("read tables of publication %s: %w", pub, err)
	}
	have := map[change.TableID]bool{}
	for rows.Next() {
		var id change.TableID
		if err := rows.Scan(&id.Schema, &id.Name); err != nil {
			rows.Close()
			return fmt.Errorf("read tables of publication %s: %w", pub, err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read tables of publication %s: %w", pub, err)
	}
	var missing []string
	for _, id := range s.cfg.Tables {
		if !have[id] {
			missing = append(missing, id.Quoted())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !own.pubOurs {
		return fmt.Errorf("publication %s was not created by sluice and does not publish %s: run ALTER PUBLICATION %s ADD TABLE %s, or leave the publication to sluice: %w",
			pub, strings.Join(missing, ", "), change.QuoteIdent(pub), strings.Join(missing, ", "), ErrForeignObjects)
	}
	// Tables reach this point only with a key and a replica identity that
	// carries it, so adding them never breaks the application's own UPDATEs
	// and DELETEs.
	if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+change.QuoteIdent(pub)+" ADD TABLE "+strings.Join(missing, ", ")); err != nil {
		return fmt.Errorf("add %s to publication %s: %w", strings.Join(missing, ", "), pub, err)
	}
	s.log.Info("added tables to publication", "publication", pub, "tables", strings.Join(missing, ", "))
	return nil
}

func privilegeHint(err error, hint string) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return ": " + hint
	}
	return ""
}

func (s *Source) ensureSlot(ctx context.Context, conn *pgx.Conn) error {
	slot, pub := s.cfg.Slot, s.cfg.Publication
	var (
		plugin, slotType, slotDB string
		db                       string
	)
	err := conn.QueryRow(ctx, `SELECT coalesce(plugin::text, ''), slot_type::text, coalesce(database::text, ''), current_database()::text
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot).Scan(&plugin, &slotType, &slotDB, &db)
	if err == nil {
		if slotType != "logical" || plugin != "pgoutput" || slotDB != db {
			return fmt.Errorf("replication slot %s exists but is not a pgoutput logical slot of database %s (it is %s, plugin %q, database %q): choose another slot name or drop it: %w", slot, db, slotType, plugin, slotDB, ErrForeignObjects)
		}
		// Streaming from an existing slot needs no free slot; only a
		// snapshot does (a temporary one), and Snapshot reports that itself.
		if err := checkCapacity(ctx, conn, 1); err != nil {
			s.log.Warn("snapshots may not start", "slot", slot, "reason", err.Error())
		}
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look up replication slot %s: %w", slot, err)
	}
	if err := checkCapacity(ctx, conn, 2); err != nil {
		return err
	}
	// Claim the slot in the publication's comment before creating it: a
	// crash in between leaves a claim on nothing (harmless), never an
	// unrecorded slot that would hold WAL forever.
	var comment string
	if err := conn.QueryRow(ctx, `SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_catalog.pg_publication WHERE pubname = $1`, pub).Scan(&comment); err != nil {
		return fmt.Errorf("read publication %s: %w", pub, err)
	}
	own := parseOwnership(comment)
	own.slot = slot
	if own.pipeline == "" {
		own.pipeline = s.cfg.Pipeline
	}
	if _, err := conn.Exec(ctx, "COMMENT ON PUBLICATION "+change.QuoteIdent(pub)+" IS "+change.QuoteLiteral(own.comment(slot))); err != nil {
		return fmt.Errorf("record ownership of slot %s on publication %s: %w%s", slot, pub, err,
			privilegeHint(err, "sluice records the slot it creates in the publication's comment, which needs ownership of the publication; create the slot yourself (SELECT pg_create_logical_replication_slot('"+slot+"', 'pgoutput')) or let sluice create the publication"))
	}
	if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "53400" {
			return fmt.Errorf("create replication slot %s: all replication slots are in use: drop unused slots (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart the server: %w", slot, ErrNoSlot)
		}
		return fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	s.log.Info("created replication slot", "slot", slot)
	// A new slot has no history that the target could lag behind: there
	// is nothing made while sluice was stopped to look for.
	s.mu.Lock()
	s.startChecked = true
	s.mu.Unlock()
	return nil
}

// checkCapacity makes sure `need` replication slots and one WAL sender are
// free: the main slot, plus a temporary slot while a snapshot starts.
func checkCapacity(ctx context.Context, conn *pgx.Conn, need int) error {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	var ms, mw string
	err := conn.QueryRow(ctx, `SELECT current_setting('max_replication_slots'), (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int,
		current_setting('max_wal_senders'), (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int`).Scan(&ms, &usedSlots, &mw, &usedSenders)
	if err != nil {
		return fmt.Errorf("read replication capacity: %w", err)
	}
	maxSlots, _ = strconv.Atoi(ms)
	maxSenders, _ = strconv.Atoi(mw)
	if maxSlots-usedSlots < need {
		return fmt.Errorf("%d of max_replication_slots = %d are in use and sluice needs %d free (its slot and a temporary one for snapshots): drop unused slots (SELECT slot_name FROM pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart the server: %w", usedSlots, maxSlots, need, ErrNoSlot)
	}
	if maxSenders-usedSenders < 1 {
		return fmt.Errorf("all max_wal_senders = %d WAL senders are in use: stop unused replication clients (see pg_stat_replication) or raise max_wal_senders and restart the server: %w", maxSenders, ErrNoWALSender)
	}
	return nil
}
