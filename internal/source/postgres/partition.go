package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// A partitioned table (relkind p) is mirrored as one table, its root: the
// publication sends every partition's changes as the root's
// (publish_via_partition_root), the snapshot reads every leaf partition in
// the same exported snapshot, and the stream's poll (catalog.go) notices
// partitions attached, detached, dropped or truncated, which send no row
// changes through the root, and re-snapshots the root. A partition named on
// its own is a plain table.

// leafIdent is a leaf partition and its replica identity.
type leafIdent struct {
	oid   uint32
	name  string // schema.name, quoted
	ident string // relreplident
}

func leafIdents(ctx context.Context, conn *pgx.Conn, root uint32) ([]leafIdent, error) {
	rows, err := conn.Query(ctx, `SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relreplident::text
		FROM pg_catalog.pg_partition_tree($1::oid::regclass) t
		JOIN pg_catalog.pg_class c ON c.oid = t.relid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE t.isleaf AND t.level > 0 ORDER BY c.oid`, root)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (leafIdent, error) {
		var l leafIdent
		err := r.Scan(&l.oid, &l.name, &l.ident)
		return l, err
	})
}

// checkLeaves makes sure every partition's updates and deletes carry the
// root's key: a primary key of the root is on every partition, but each
// partition has its own replica identity.
func checkLeaves(ctx context.Context, conn *pgx.Conn, m *tableMeta, pk []string, leaves []leafIdent) error {
	id := m.table.ID()
	usesPK := len(pk) > 0 && slices.Equal(m.keyNames, pk)
	for _, l := range leaves {
		switch {
		case l.ident == "n":
			return fmt.Errorf("partition %s of %s has REPLICA IDENTITY NOTHING, so its updates and deletes carry no key: run ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL): %w", l.name, id, l.name, ErrNoKey)
		case l.ident == "f":
		case !usesPK:
			return fmt.Errorf("partition %s of %s: the table's key (%s) is not its primary key, so every partition needs REPLICA IDENTITY FULL for its updates and deletes to carry the old row: run ALTER TABLE %s REPLICA IDENTITY FULL: %w",
				l.name, id, strings.Join(m.keyNames, ", "), l.name, ErrNoKey)
		case l.ident == "i":
			cols, err := indexColumns(ctx, conn, l.oid, "indisreplident")
			if err != nil {
				return fmt.Errorf("read replica identity of %s: %w", l.name, err)
			}
			if !slices.Equal(cols, pk) {
				return fmt.Errorf("partition %s of %s has a replica identity index on (%s), not the table's key (%s): run ALTER TABLE %s REPLICA IDENTITY DEFAULT: %w",
					l.name, id, strings.Join(cols, ", "), strings.Join(pk, ", "), l.name, ErrNoKey)
			}
		}
	}
	return nil
}

// checkNested refuses a table that is mirrored itself and is a partition of
// a mirrored partitioned table: its rows are already in the root's mirror,
// and its changes are sent as the root's, never as its own.
func checkNested(ctx context.Context, conn *pgx.Conn, metas []*tableMeta) error {
	relids := make([]uint32, 0, len(metas))
	byOID := map[uint32]change.TableID{}
	for _, m := range metas {
		relids = append(relids, m.relid)
		byOID[m.relid] = m.table.ID()
	}
	rows, err := conn.Query(ctx, `SELECT c.relid, a.relid::oid FROM unnest($1::oid[]) AS c(relid)
		CROSS JOIN LATERAL pg_catalog.pg_partition_ancestors(c.relid::regclass) AS a
		WHERE a.relid::oid <> c.relid AND a.relid::oid = ANY($1::oid[])`, relids)
	if err != nil {
		return fmt.Errorf("read partition ancestors: %w", err)
	}
	type pair struct{ Part, Root uint32 }
	pairs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pair])
	if err != nil {
		return fmt.Errorf("read partition ancestors: %w", err)
	}
	var errs []string
	for _, p := range pairs {
		errs = append(errs, fmt.Sprintf("table %s is a partition of %s, which is mirrored too: the root's mirror holds its rows already and its changes are sent as the root's; list only one of them", byOID[p.Part], byOID[p.Root]))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(errs, "; "), ErrForeignObjects)
	}
	return nil
}

// checkPublishedAncestors refuses a mirrored partition whose partitioned
// ancestor the publication publishes through the root (possible with a
// publication sluice did not create, or one still publishing a root that
// is no longer mirrored): its changes would arrive as the ancestor's.
func (s *Source) checkPublishedAncestors(ctx context.Context, conn *pgx.Conn, metas []*tableMeta) error {
	relids := make([]uint32, 0, len(metas))
	for _, m := range metas {
		if !m.partitioned {
			relids = append(relids, m.relid)
		}
	}
	rows, err := conn.Query(ctx, `SELECT c.relid::regclass::text, a.relid::regclass::text
		FROM unnest($1::oid[]) AS c(relid)
		CROSS JOIN LATERAL pg_catalog.pg_partition_ancestors(c.relid::regclass) AS a
		JOIN pg_catalog.pg_class ac ON ac.oid = a.relid
		JOIN pg_catalog.pg_namespace an ON an.oid = ac.relnamespace
		JOIN pg_catalog.pg_publication p ON p.pubname = $2 AND p.pubviaroot
		WHERE a.relid::oid <> c.relid AND EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
			WHERE pt.pubname = $2 AND pt.schemaname = an.nspname AND pt.tablename = ac.relname)`, relids, s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("read published ancestors: %w", err)
	}
	type pair struct{ Part, Root string }
	pairs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pair])
	if err != nil {
		return fmt.Errorf("read published ancestors: %w", err)
	}
	if len(pairs) == 0 {
		return nil
	}
	p := pairs[0]
	return fmt.Errorf("table %s is a partition of %s, which publication %s publishes through its root, so the partition's changes arrive as %s's: mirror %s instead, or remove it from the publication (ALTER PUBLICATION %s DROP TABLE %s): %w",
		p.Part, p.Root, s.cfg.Publication, p.Root, p.Root, change.QuoteIdent(s.cfg.Publication), p.Part, ErrForeignObjects)
}

// partitionedTables names the mirrored partitioned tables.
func (s *Source) partitionedTables() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.roots)
}
