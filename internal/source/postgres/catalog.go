package postgres

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// Some changes to a table never appear in the stream as row changes: a
// column added with a volatile default (the table is rewritten with the new
// values), a column's type changed (rewritten through USING), a partition
// attached with its rows, detached, dropped or truncated. The source tells
// them from the catalog and snapshots just that table again (resnapshot.go).
//
// What it compares: a column's type and type modifier (a change of them is
// always re-snapshotted); the storage file of the table, or of each leaf
// partition (pg_class.relfilenode: a new one means the table was rewritten
// or truncated); and the transaction that last wrote each column's
// pg_attribute row. A rewrite together with a column added without a fast
// default, or with a column's row rewritten, is a change the stream cannot
// describe; a rewrite alone (TRUNCATE, which is streamed, VACUUM FULL,
// CLUSTER) is not. For a partitioned table any partition's new file means a
// re-snapshot: a partition's TRUNCATE is not published through the root.
// Erring towards a re-snapshot is always correct; a needless one costs time.

// catalogState is what the catalog says of a mirrored table at one moment.
type catalogState struct {
	files map[uint32]relFile // the table's storage, or each leaf partition's, by oid
	cols  map[string]catColumn
}

// relFile is one relation holding rows: a plain table or a leaf partition.
type relFile struct {
	oid       uint32
	name      string // quoted schema.name
	node      uint32 // pg_class.relfilenode
	kind      string // relkind
	canSelect bool
	// inhXmin and inhCmin say when the partition became one (its
	// pg_inherits row's transaction and command): rows written before it
	// never streamed through the root.
	inhXmin, inhCmin string
}

type catColumn struct {
	name     string
	num      int
	typ      uint32
	typmod   int32
	typName  string
	nullable bool
	missing  bool   // atthasmissing: rows older than the column hold a fast default
	missVal  string // attmissingval's text, when missing
	xmin     uint32 // the transaction that wrote the column's pg_attribute row
}

// shapeCol is a column's shape as a relation message or the catalog gives it.
type shapeCol struct {
	name    string
	typ     uint32
	typmod  int32
	typName string
}

// rowsQuerier is a connection or a transaction.
type rowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readCatalog reads the catalog state of the tables relids. A table that no
// longer exists is missing from the result.
func readCatalog(ctx context.Context, q rowsQuerier, relids []uint32) (map[uint32]*catalogState, error) {
	out := make(map[uint32]*catalogState, len(relids))
	rows, err := q.Query(ctx, `SELECT r.root, c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relfilenode, c.relkind::text,
			has_table_privilege(c.oid, 'SELECT'), `+inheritsSQL+`
		FROM unnest($1::oid[]) AS r(root)
		JOIN pg_catalog.pg_class rc ON rc.oid = r.root
		CROSS JOIN LATERAL (
			SELECT t.relid FROM pg_catalog.pg_partition_tree(r.root::regclass) t WHERE rc.relkind = 'p' AND t.isleaf
			UNION ALL SELECT r.root WHERE rc.relkind <> 'p') AS l(relid)
		JOIN pg_catalog.pg_class c ON c.oid = l.relid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`, relids)
	if err != nil {
		return nil, fmt.Errorf("read storage of mirrored tables: %w", err)
	}
	state := func(root uint32) *catalogState {
		cs := out[root]
		if cs == nil {
			cs = &catalogState{files: map[uint32]relFile{}, cols: map[string]catColumn{}}
			out[root] = cs
		}
		return cs
	}
	for rows.Next() {
		var root uint32
		var f relFile
		if err := rows.Scan(&root, &f.oid, &f.name, &f.node, &f.kind, &f.canSelect, &f.inhXmin, &f.inhCmin); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read storage of mirrored tables: %w", err)
		}
		state(root).files[f.oid] = f
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read storage of mirrored tables: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT a.attrelid, a.attname::text, a.attnum::int, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod),
			NOT a.attnotnull, a.atthasmissing, coalesce(a.attmissingval::text, ''), a.xmin::text
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''`, relids)
	if err != nil {
		return nil, fmt.Errorf("read columns of mirrored tables: %w", err)
	}
	for rows.Next() {
		var rel uint32
		var c catColumn
		var xmin string
		if err := rows.Scan(&rel, &c.name, &c.num, &c.typ, &c.typmod, &c.typName, &c.nullable, &c.missing, &c.missVal, &xmin); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of mirrored tables: %w", err)
		}
		x, _ := strconv.ParseUint(xmin, 10, 32)
		c.xmin = uint32(x)
		state(rel).cols[c.name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of mirrored tables: %w", err)
	}
	// A partitioned table has no storage, so a constant default added to
	// it is a fast default of each partition, not of the root.
	leafRoot := map[uint32]uint32{}
	var leaves []uint32
	for root, cs := range out {
		for oid := range cs.files {
			if oid != root {
				leafRoot[oid] = root
				leaves = append(leaves, oid)
			}
		}
	}
	if len(leaves) == 0 {
		return out, nil
	}
	rows, err = q.Query(ctx, `SELECT a.attrelid, a.attname::text, coalesce(a.attmissingval::text, '')
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.atthasmissing`, leaves)
	if err != nil {
		return nil, fmt.Errorf("read columns of partitions: %w", err)
	}
	for rows.Next() {
		var leaf uint32
		var name, val string
		if err := rows.Scan(&leaf, &name, &val); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of partitions: %w", err)
		}
		cs := out[leafRoot[leaf]]
		if c, ok := cs.cols[name]; ok && !c.missing {
			c.missing, c.missVal = true, val
			cs.cols[name] = c
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of partitions: %w", err)
	}
	return out, nil
}

// inheritsSQL gives the transaction and command that made c a partition.
const inheritsSQL = `coalesce((SELECT i.xmin::text FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1), ''),
			coalesce((SELECT i.cmin::text FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1), '')`

// readCatalogs sets the catalog state of freshly loaded tables.
func readCatalogs(ctx context.Context, q rowsQuerier, metas []*tableMeta) error {
	relids := make([]uint32, len(metas))
	for i, m := range metas {
		relids[i] = m.relid
	}
	cats, err := readCatalog(ctx, q, relids)
	if err != nil {
		return err
	}
	for _, m := range metas {
		m.cat = cats[m.relid]
	}
	return nil
}

// shape returns the columns in column-number order.
func (cs *catalogState) shape() []shapeCol {
	cols := make([]catColumn, 0, len(cs.cols))
	for _, c := range cs.cols {
		cols = append(cols, c)
	}
	sort.Slice(cols, func(i, j int) bool { return cols[i].num < cols[j].num })
	out := make([]shapeCol, len(cols))
	for i, c := range cols {
		out[i] = shapeCol{name: c.name, typ: c.typ, typmod: c.typmod, typName: c.typName}
	}
	return out
}

func (cs *catalogState) sortedFiles() []relFile {
	out := make([]relFile, 0, len(cs.files))
	for _, f := range cs.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b relFile) int { return int(a.oid) - int(b.oid) })
	return out
}

// unseen says why the stream cannot bring the mirror of m from what was
// known (m's shape and the catalog state old) to now, with shape cols (a
// relation message's or the catalog's), or "" if it can. For a partitioned
// table it also returns the partitions that are new since old: whether they
// need a re-snapshot depends on whether they came with rows (attachedRows).
func unseen(m *tableMeta, old, now *catalogState, cols []shapeCol) (string, []relFile) {
	for _, c := range cols {
		i := m.table.Column(c.name)
		if i < 0 {
			continue
		}
		o := m.table.Columns[i]
		if nc, ok := now.cols[c.name]; ok && o.Num != 0 && nc.num != o.Num {
			continue // dropped and added again: a new column, not a changed one
		}
		if c.typ != o.Type.OID || c.typmod != m.typmods[i] {
			return fmt.Sprintf("column %s changed type %s -> %s", c.name, o.Type.Name, c.typName), nil
		}
	}
	if old == nil {
		return "", nil
	}
	rewritten := false
	for _, f := range old.sortedFiles() {
		nf, ok := now.files[f.oid]
		switch {
		case !ok && m.partitioned:
			return fmt.Sprintf("partition %s was detached or dropped (neither sends row changes)", f.name), nil
		case !ok:
		case nf.node != f.node && m.partitioned:
			return fmt.Sprintf("partition %s was truncated or rewritten (a partition's TRUNCATE is not sent through the root)", f.name), nil
		case nf.node != f.node:
			rewritten = true
		}
	}
	if rewritten {
		for _, c := range now.shape() {
			nc := now.cols[c.name]
			oc, ok := old.cols[c.name]
			switch {
			case (!ok || oc.num != nc.num) && !nc.missing:
				return fmt.Sprintf("column %s was added with a volatile default: the table was rewritten and the existing rows' values never reach the stream", c.name), nil
			case ok && oc.num == nc.num && oc.xmin != nc.xmin && !(oc.missing && !nc.missing):
				// (A rewrite writes the fast defaults into the rows and
				// clears atthasmissing: that alone changes no value.)
				return fmt.Sprintf("column %s was altered and the table rewritten: the rows' new values never reach the stream", c.name), nil
			}
		}
	}
	var added []relFile
	if m.partitioned {
		for _, f := range now.sortedFiles() {
			if _, ok := old.files[f.oid]; !ok {
				added = append(added, f)
			}
		}
	}
	return "", added
}

// attachedRows says why partitions new to a partitioned table need its
// re-snapshot: they came with rows (ATTACH PARTITION sends no row changes),
// that is rows written before the partition became one: by an older
// transaction, or by the same one before the command that attached it. A
// partition created as one needs none: its rows stream through the root.
func attachedRows(ctx context.Context, conn *pgx.Conn, parts []relFile) (string, error) {
	for _, f := range parts {
		if !f.canSelect {
			return fmt.Sprintf("partition %s was attached (without SELECT on it sluice cannot tell whether it came with rows)", f.name), nil
		}
		q, args := "SELECT EXISTS (SELECT 1 FROM ONLY "+f.name+")", []any{}
		if f.inhXmin != "" && f.inhCmin != "" {
			q = "SELECT EXISTS (SELECT 1 FROM ONLY " + f.name + " r WHERE age(r.xmin) > age($1::text::xid) OR (r.xmin = $1::text::xid AND r.cmin::text::bigint < $2::text::bigint))"
			args = []any{f.inhXmin, f.inhCmin}
		}
		var rows bool
		if err := conn.QueryRow(ctx, q, args...).Scan(&rows); err != nil {
			return "", fmt.Errorf("look into new partition %s: %w", f.name, err)
		}
		if rows {
			return fmt.Sprintf("partition %s was attached with rows (an attach sends no row changes)", f.name), nil
		}
	}
	return "", nil
}

// check compares every mirrored table with the catalog now. Tables that
// need a re-snapshot are returned with the reason; for the others, the
// catalog state becomes the known one.
func (s *Source) check(ctx context.Context, conn *pgx.Conn) (map[change.TableID]string, error) {
	metas := s.allMetas()
	relids := make([]uint32, len(metas))
	for i, m := range metas {
		relids[i] = m.relid
	}
	cats, err := readCatalog(ctx, conn, relids)
	if err != nil {
		return nil, err
	}
	need := map[change.TableID]string{}
	for _, m := range metas {
		now := cats[m.relid]
		if now == nil {
			continue // dropped: the stream says what it can
		}
		s.mu.Lock()
		old := m.cat
		s.mu.Unlock()
		why, added := unseen(m, old, now, now.shape())
		if why == "" && len(added) > 0 {
			if why, err = attachedRows(ctx, conn, added); err != nil {
				return nil, err
			}
		}
		if why != "" {
			need[m.table.ID()] = why
			continue
		}
		s.mu.Lock()
		if s.tables[m.table.ID()] == m {
			m.cat = now
		}
		s.mu.Unlock()
	}
	return need, nil
}

// checkStartup finds the changes that may have been made while sluice was
// stopped, which the running checks cannot see because the catalog state
// sluice knew then is gone: a column whose pg_attribute row was written by
// a transaction the slot has not passed (its xmin is not older than the
// slot's catalog_xmin) was added or altered after the slot's confirmed
// position, so the target may not know it. Columns added with a fast
// default are left to the stream. For a partitioned table, a partition
// whose pg_inherits row is that recent and has rows was attached meanwhile.
// Columns written by the transaction that created the table (the one that
// wrote its row type) are as old as the table and not suspect. Tables this
// process snapshotted are not checked. It errs towards a re-snapshot: any
// recent column DDL (SET NOT NULL, ADD COLUMN without a default) counts.
func (s *Source) checkStartup(ctx context.Context, conn *pgx.Conn) (map[change.TableID]string, error) {
	var metas []*tableMeta
	for _, m := range s.allMetas() {
		if m.snapAt.Load() == 0 {
			metas = append(metas, m)
		}
	}
	need := map[change.TableID]string{}
	if len(metas) == 0 {
		return need, nil
	}
	byOID := map[uint32]*tableMeta{}
	relids := make([]uint32, len(metas))
	for i, m := range metas {
		relids[i] = m.relid
		byOID[m.relid] = m
	}
	rows, err := conn.Query(ctx, `SELECT a.attrelid, a.attname::text
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_type ty ON ty.oid = c.reltype
		JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $2 AND s.catalog_xmin IS NOT NULL
		WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		  AND NOT a.atthasmissing AND a.xmin <> ty.xmin AND age(a.xmin) <= age(s.catalog_xmin)
		ORDER BY a.attrelid, a.attnum`, relids, s.cfg.Slot)
	if err != nil {
		return nil, fmt.Errorf("check for changes made while stopped: %w", err)
	}
	type recent struct {
		Rel  uint32
		Name string
	}
	cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[recent])
	if err != nil {
		return nil, fmt.Errorf("check for changes made while stopped: %w", err)
	}
	for _, c := range cols {
		id := byOID[c.Rel].table.ID()
		if _, ok := need[id]; !ok {
			need[id] = fmt.Sprintf("column %s was added or altered after the slot's position, perhaps while sluice was stopped, and the mirror may not have its values", c.Name)
		}
	}
	rows, err = conn.Query(ctx, `SELECT r.root, c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relfilenode, c.relkind::text,
			has_table_privilege(c.oid, 'SELECT'), `+inheritsSQL+`
		FROM unnest($1::oid[]) AS r(root)
		CROSS JOIN LATERAL pg_catalog.pg_partition_tree(r.root::regclass) AS t
		JOIN pg_catalog.pg_inherits i ON i.inhrelid = t.relid
		JOIN pg_catalog.pg_class c ON c.oid = t.relid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $2 AND s.catalog_xmin IS NOT NULL
		WHERE t.isleaf AND t.level > 0 AND age(i.xmin) <= age(s.catalog_xmin)`, relids, s.cfg.Slot)
	if err != nil {
		return nil, fmt.Errorf("check for partitions attached while stopped: %w", err)
	}
	parts := map[uint32][]relFile{}
	for rows.Next() {
		var root uint32
		var f relFile
		if err := rows.Scan(&root, &f.oid, &f.name, &f.node, &f.kind, &f.canSelect, &f.inhXmin, &f.inhCmin); err != nil {
			rows.Close()
			return nil, fmt.Errorf("check for partitions attached while stopped: %w", err)
		}
		parts[root] = append(parts[root], f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("check for partitions attached while stopped: %w", err)
	}
	for root, fs := range parts {
		id := byOID[root].table.ID()
		if _, ok := need[id]; ok {
			continue
		}
		why, err := attachedRows(ctx, conn, fs)
		if err != nil {
			return nil, err
		}
		if why != "" {
			need[id] = strings.Replace(why, "was attached", "was attached after the slot's position, perhaps while sluice was stopped,", 1)
		}
	}
	return need, nil
}

func (s *Source) allMetas() []*tableMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*tableMeta, 0, len(s.tables))
	for _, m := range s.tables {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *tableMeta) int { return strings.Compare(a.table.ID().String(), b.table.ID().String()) })
	return out
}
