package redshift

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// CatalogInspector answers Exists from the catalog, through a Conn. The
// queries use pg_namespace and pg_class, which Redshift and Postgres both
// have (external schemas are in pg_namespace; materialized views in
// pg_class), so the Postgres stand-in checks the same SQL Redshift runs.
type CatalogInspector struct {
	Conn    Conn
	Dialect Dialect
}

var (
	_ Inspector    = CatalogInspector{}
	_ ColumnLister = CatalogInspector{}
)

// Columns lists a table's columns in order (pg_attribute, in both).
func (ci CatalogInspector) Columns(ctx context.Context, o Object) ([]string, error) {
	lit := ci.Dialect.Literal
	rows, err := ci.Conn.Query(ctx, "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "+
		"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "+lit(o.Schema)+" AND c.relname = "+lit(o.Name)+
		" AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = deref(r[0])
	}
	return out, nil
}

// Exists reports whether o exists.
func (ci CatalogInspector) Exists(ctx context.Context, o Object) (bool, error) {
	lit := ci.Dialect.Literal
	sql := "SELECT 1 FROM pg_namespace WHERE nspname = " + lit(o.Schema)
	if o.Name != "" {
		sql = "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = " +
			lit(o.Schema) + " AND c.relname = " + lit(o.Name)
	}
	rows, err := ci.Conn.Query(ctx, sql)
	if err != nil {
		return false, err
	}
	return len(rows) > 0, nil
}

// Setup creates what the plan needs and does not find, and records each
// object it created so Teardown removes exactly those. Running it again
// creates nothing. Each object is created on its own: CREATE EXTERNAL
// SCHEMA and a streaming materialized view cannot share a transaction
// block with other statements in Redshift.
func Setup(ctx context.Context, conn Conn, p *Plan, log *slog.Logger) error {
	if err := p.Inspect(ctx, CatalogInspector{Conn: conn, Dialect: p.Config.Dialect}); err != nil {
		return err
	}
	for _, o := range p.Objects {
		if o.State == Conflict {
			return fmt.Errorf("set up: %s %s %s", o.Kind, o.ID(), "exists, but "+o.Problem)
		}
	}
	lit := p.Config.Dialect.Literal
	var pending []Object // created before the bookkeeping table existed
	haveCreated := false
	for _, o := range p.Objects {
		if o.Kind == KindTable && o.Schema == p.Created.Schema && o.Name == p.Created.Name {
			haveCreated = true
		}
		if o.State == Exists {
			continue
		}
		if err := conn.Exec(ctx, o.Create); err != nil {
			return fmt.Errorf("create %s %s: %w", o.Kind, o.ID(), err)
		}
		if log != nil {
			log.Info("created", "kind", o.Kind.String(), "name", o.ID())
		}
		pending = append(pending, o)
		if !haveCreated {
			continue
		}
		var recs []string
		for _, c := range pending {
			recs = append(recs, "INSERT INTO "+p.Created.Quoted()+` ("kind", "schema_name", "object_name", "created_at") VALUES (`+
				lit(c.Kind.String())+", "+lit(c.Schema)+", "+lit(c.Name)+", "+p.Config.Dialect.Now()+")")
		}
		if err := conn.ExecTx(ctx, recs); err != nil {
			return fmt.Errorf("record created objects: %w", err)
		}
		pending = nil
	}
	return nil
}

// TeardownOptions choose what Teardown removes beyond sluice's plumbing.
type TeardownOptions struct {
	// DropTables also drops the mirrored tables sluice created (their data
	// is lost). By default they stay: they are the user's product.
	DropTables bool
}

// Teardown drops, in reverse creation order, the objects that Setup created
// (as recorded), leaving alone everything that existed before. Running it
// again does nothing.
func Teardown(ctx context.Context, conn Conn, p *Plan, opt TeardownOptions, log *slog.Logger) error {
	if err := p.Inspect(ctx, CatalogInspector{Conn: conn, Dialect: p.Config.Dialect}); err != nil {
		return err
	}
	created := map[[3]string]bool{}
	for _, o := range p.Objects {
		if o.Kind == KindTable && o.Schema == p.Created.Schema && o.Name == p.Created.Name && o.State == Exists {
			rows, err := conn.Query(ctx, `SELECT "kind", "schema_name", "object_name" FROM `+p.Created.Quoted())
			if err != nil {
				return fmt.Errorf("read what sluice created: %w", err)
			}
			for _, r := range rows {
				created[[3]string{deref(r[0]), deref(r[1]), deref(r[2])}] = true
			}
		}
	}
	targets := map[change.TableID]bool{}
	for _, tp := range p.Tables {
		targets[tp.Target] = true
	}
	keep := map[string]bool{} // schemas that still hold a kept table
	for i := len(p.Objects) - 1; i >= 0; i-- {
		o := p.Objects[i]
		if o.State != Exists || !created[[3]string{o.Kind.String(), o.Schema, o.Name}] {
			continue
		}
		if o.Kind == KindTable && targets[change.TableID{Schema: o.Schema, Name: o.Name}] && !opt.DropTables {
			keep[o.Schema] = true
			continue
		}
		if o.Kind == KindSchema && keep[o.Schema] {
			continue
		}
		if err := conn.Exec(ctx, o.Drop); err != nil {
			return fmt.Errorf("drop %s %s: %w", o.Kind, o.ID(), err)
		}
		if log != nil {
			log.Info("dropped", "kind", o.Kind.String(), "name", o.ID())
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Merge runs one incremental merge of every table, each in its own
// transaction: the records that landed since the table's watermarks are
// applied, and the watermarks moved, or nothing is. Running it again with
// nothing new landed changes nothing. A schema change at the source is
// applied to the mirror in the same transaction (schema.go).
func Merge(ctx context.Context, conn Conn, p *Plan) error {
	for _, tp := range p.Tables {
		if err := checkUnparsed(ctx, conn, p, tp); err != nil {
			return err
		}
		stmts, shape, err := p.mergeRun(ctx, conn, tp)
		if err != nil {
			return err
		}
		if err := conn.ExecTx(ctx, stmts); err != nil {
			return fmt.Errorf("merge %s into %s: %w", tp.Source.ID(), tp.Target, err)
		}
		p.setAligned(tp, shape)
	}
	return nil
}

// checkUnparsed fails, naming the records and the way on, when records
// Redshift could not parse may be the table's.
func checkUnparsed(ctx context.Context, conn Conn, p *Plan, tp *TablePlan) error {
	rows, err := conn.Query(ctx, UnparsedSQL(p, tp))
	if err != nil {
		return fmt.Errorf("check the records of %s: %w", tp.Source.ID(), err)
	}
	if len(rows) == 0 {
		return nil
	}
	var recs, acks []string
	lit := p.Config.Dialect.Literal
	pos := p.pos()
	for _, r := range rows {
		recs = append(recs, pos.where(deref(r[0]), deref(r[1]), deref(r[2])))
		acks = append(acks, "INSERT INTO "+p.Skipped.Quoted()+` ("table_name", `+q(pos.lane)+", "+q(pos.seq)+`, "skipped_at") VALUES (`+
			lit(tp.Target.Quoted())+", "+lit(deref(r[0]))+", "+lit(deref(r[1]))+", "+p.Config.Dialect.Now()+");")
	}
	return fmt.Errorf("merge %s into %s: %w: %s. Redshift's JSON_PARSE refuses strings over 65,535 bytes and keys repeated in an object; the view keeps such a record's bytes in %s.\"unparsed_data\". Nothing was merged, nothing is lost. "+
		"To go on, put the row right in the mirror by hand or resnapshot the table, then list the record as skipped:\n%s",
		tp.Source.ID(), tp.Target, ErrUnparseable, strings.Join(recs, "; "), p.Landing.Quoted(), strings.Join(acks, "\n"))
}
