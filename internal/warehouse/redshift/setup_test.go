package redshift

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func exists(t *testing.T, db *PgConn, o Object) bool {
	t.Helper()
	ok, err := CatalogInspector{Conn: db, Dialect: Postgres}.Exists(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// The plan marks what exists like terraform; Setup creates only what is
// missing and is idempotent; Teardown removes only what Setup created.
func TestPlanSetupTeardown(t *testing.T) {
	ctx := context.Background()
	name, err := cluster.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, standInURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	db, err := NewPgConn(ctx, conn, Postgres)
	if err != nil {
		t.Fatal(err)
	}
	// The user made the state schema beforehand: sluice must leave it.
	if err := db.Exec(ctx, `CREATE SCHEMA "_sluice"`); err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, seedConfig(Postgres, customers()))
	if err := p.Inspect(ctx, CatalogInspector{Conn: db, Dialect: Postgres}); err != nil {
		t.Fatal(err)
	}
	golden(t, "postgres_plan_inspected.txt", p.String())

	if err := Setup(ctx, db, p, nil); err != nil {
		t.Fatal(err)
	}
	if err := Setup(ctx, db, p, nil); err != nil {
		t.Fatalf("second setup: %v", err)
	}
	for _, o := range p.Objects {
		if o.State != Exists {
			t.Errorf("after setup, %s %s is %v, want it to exist", o.Kind, o.ID(), o.State)
		}
	}
	rows, err := db.Query(ctx, `SELECT count(*) FROM "_sluice"."created"`)
	if err != nil {
		t.Fatal(err)
	}
	// created, landing, watermarks, truncations, skipped, customers, its delete markers; not "public", not "_sluice".
	if got := *rows[0][0]; got != "7" {
		t.Errorf("setup recorded %s created objects, want 7", got)
	}

	if err := Teardown(ctx, db, p, TeardownOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(ctx, db, p, TeardownOptions{}, nil); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	for _, o := range p.Objects {
		want := false
		switch {
		case o.Kind == KindSchema: // public and the user's sluice schema
			want = true
		case o.Schema == "public" && o.Name == "customers": // the mirror is kept by default
			want = true
		}
		if got := exists(t, db, o); got != want {
			t.Errorf("after teardown, %s %s exists = %v, want %v", o.Kind, o.ID(), got, want)
		}
	}

	// Set up again and tear down with the tables.
	if err := db.Exec(ctx, `DROP TABLE "public"."customers"`); err != nil {
		t.Fatal(err)
	}
	if err := Setup(ctx, db, p, nil); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(ctx, db, p, TeardownOptions{DropTables: true}, nil); err != nil {
		t.Fatal(err)
	}
	for _, o := range p.Objects {
		if got := exists(t, db, o); got != (o.Kind == KindSchema) {
			t.Errorf("after teardown with tables, %s %s exists = %v", o.Kind, o.ID(), got)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"stream ARN as role", func(c *Config) { c.RoleARN = "arn:aws:kinesis:*:0123456789:stream/*" }, "a stream ARN does not belong here"},
		{"no stream", func(c *Config) { c.StreamName = "" }, "set the Kinesis stream's name"},
		{"no region", func(c *Config) { c.Region = "" }, "set the stream's AWS region"},
		{"bad account", func(c *Config) { c.AccountID = "0123" }, "12-digit AWS account ID"},
		{"ARN mismatch", func(c *Config) { c.StreamARN = "arn:aws:kinesis:us-east-1:123456789012:stream/other" }, "does not name stream"},
		{"reserved column", func(c *Config) { c.Tables[0].Columns[1].Name = "_sluice_x" }, "reserved"},
		{"no tables", func(c *Config) { c.Tables = nil }, "list at least one source table"},
		// The view's background refresh does not run in sluice's session:
		// https://docs.aws.amazon.com/redshift/latest/dg/r_enable_case_sensitive_identifier.html
		{"upper-case stream", func(c *Config) { c.StreamName = "Orders" }, "in the cluster's parameter group"},
		{"upper-case external schema", func(c *Config) { c.ExternalSchema = "Kinesis" }, "in the cluster's parameter group"},
		{"bad chained role", func(c *Config) { c.ChainRoleARNs = []string{"arn:aws:kinesis:us-east-1:123456789012:stream/s"} }, "chained IAM role ARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := seedConfig(Redshift, customers())
			tc.edit(&cfg)
			_, err := NewPlan(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to say %q", err, tc.want)
			}
		})
	}
	// Upper-case names pass when the parameter group is said to make
	// identifiers case-sensitive, and the plan says it relies on that.
	up := seedConfig(Redshift, customers())
	up.StreamName, up.CaseSensitiveParameterGroup = "Orders", true
	if p, err := NewPlan(up); err != nil || !strings.Contains(p.String(), "Requires enable_case_sensitive_identifier = true in the cluster's parameter group") {
		t.Fatalf("upper-case stream with the parameter group set: %v\n%v", err, p)
	}
	// The China partition is derived from the region.
	cfg := seedConfig(Redshift, customers())
	cfg.Region = "cn-north-1"
	cfg.RoleARN = "arn:aws-cn:iam::123456789012:role/r"
	p, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/hubert-redshift"; p.Config.StreamARN != want {
		t.Fatalf("stream ARN %s, want %s", p.Config.StreamARN, want)
	}
}

// A table of the mirror's name but other columns is in the way: the plan
// says so and Setup refuses, creating nothing.
func TestSetupRefusesATableInTheWay(t *testing.T) {
	ctx := context.Background()
	name, err := cluster.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, standInURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	db, err := NewPgConn(ctx, conn, Postgres)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(ctx, `CREATE TABLE "public"."customers" ("userid" int PRIMARY KEY, "name" text)`); err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, seedConfig(Postgres, customers()))
	err = Setup(ctx, db, p, nil)
	if err == nil || !strings.Contains(err.Error(), `table "public"."customers" exists, but it has columns (userid, name)`) {
		t.Fatalf("setup: err = %v, want a refusal naming the table and its columns", err)
	}
	if !strings.Contains(p.String(), `  ! table "public"."customers"`) {
		t.Errorf("plan does not mark the table in the way:\n%s", p)
	}
	if exists(t, db, object(t, p, KindSchema, "_sluice", "")) {
		t.Error("setup created the state schema before refusing")
	}
}
