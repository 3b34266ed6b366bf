package redshift

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden (rewriting it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./internal/warehouse/redshift -update to create it): %v", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file; if the change is intended, run with -update and review the diff.\n--- got ---\n%s", path, got)
	}
}

// customers is the seed tutorial's table.
func customers() *change.Table {
	return &change.Table{Schema: "public", Name: "customers", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "userid", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "first_name", Type: change.Type{Name: "character varying(63)", Kind: change.KindText}},
		{Name: "last_name", Type: change.Type{Name: "character varying(63)", Kind: change.KindText}},
		{Name: "phone", Type: change.Type{Name: "character varying(63)", Kind: change.KindText}, Nullable: true},
	}}
}

// allTypes has a column of every supported type.
func allTypes() *change.Table {
	col := func(name, typ string, k change.Kind) change.Column {
		return change.Column{Name: name, Type: change.Type{Name: typ, Kind: k}, Nullable: true}
	}
	t := &change.Table{Schema: "shop", Name: "every_type", Version: 1, Key: []int{0, 1}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Key: true},
		{Name: "Region", Type: change.Type{Name: "text", Kind: change.KindText}, Key: true},
		col("b", "boolean", change.KindBool),
		col("i2", "smallint", change.KindInt),
		col("i4", "integer", change.KindInt),
		col("i8", "bigint", change.KindInt),
		col("o", "oid", change.KindInt),
		col("f4", "real", change.KindFloat),
		col("f8", "double precision", change.KindFloat),
		col("amount", "numeric(12,2)", change.KindNumeric),
		col("wide", "numeric(50,10)", change.KindNumeric),
		col("free", "numeric", change.KindNumeric),
		col("name", "character varying(63)", change.KindText),
		col("any_length", "character varying", change.KindText),
		col("code", "character(3)", change.KindText),
		col("body", "text", change.KindText),
		col("uid", "uuid", change.KindText),
		col("addr", "inet", change.KindText),
		col("mood", "mood", change.KindText),
		col("span", "interval", change.KindText),
		{Name: "short_domain", Type: change.Type{Name: "short_text", Kind: change.KindText, Base: "character varying(10)"}, Nullable: true},
		col("raw", "bytea", change.KindBytes),
		col("day", "date", change.KindDate),
		col("at", "time without time zone", change.KindTime),
		col("at_tz", "time with time zone", change.KindTime),
		col("ts", "timestamp without time zone", change.KindTimestamp),
		col("ts_tz", "timestamp(3) with time zone", change.KindTimestampTZ),
		col("doc", "json", change.KindJSON),
		col("docb", "jsonb", change.KindJSON),
		{Name: "tags", Type: change.Type{Name: "text[]", Kind: change.KindArray, Elem: change.KindText, Base: "text"}, Nullable: true},
		{Name: "matrix", Type: change.Type{Name: "integer[]", Kind: change.KindArray, Elem: change.KindInt, Base: "integer"}, Nullable: true},
		{Name: `odd "name" \ back'slash`, Type: change.Type{Name: "text", Kind: change.KindText}},
	}}
	t.Columns[0].Nullable, t.Columns[1].Nullable = false, false
	return t
}

func seedConfig(d Dialect, tables ...*change.Table) Config {
	return Config{
		StreamName: "hubert-redshift",
		Region:     "us-east-1",
		AccountID:  "123456789012",
		RoleARN:    "arn:aws:iam::123456789012:role/sluice-redshift-streaming",
		Tables:     tables,
		Dialect:    d,
	}
}

func mustPlan(t testing.TB, cfg Config) *Plan {
	t.Helper()
	p, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func object(t *testing.T, p *Plan, kind ObjectKind, schema, name string) Object {
	t.Helper()
	for _, o := range p.Objects {
		if o.Kind == kind && o.Schema == schema && o.Name == name {
			return o
		}
	}
	t.Fatalf("plan has no %s %s.%s", kind, schema, name)
	return Object{}
}

func TestGoldenRedshift(t *testing.T) {
	p := mustPlan(t, seedConfig(Redshift, customers(), allTypes()))
	golden(t, "iam_trust_policy.json", string(p.TrustPolicy)+"\n")
	golden(t, "iam_permission_policy.json", string(p.PermissionPolicy)+"\n")
	golden(t, "external_schema.sql", object(t, p, KindExternalSchema, "sluice_kinesis", "").Create+";\n")
	golden(t, "streaming_view.sql", object(t, p, KindMaterializedView, "_sluice", "hubert-redshift").Create+";\n")
	golden(t, "state_tables.sql", object(t, p, KindTable, "_sluice", "watermarks").Create+";\n\n"+
		object(t, p, KindTable, "_sluice", "truncations").Create+";\n\n"+
		object(t, p, KindTable, "_sluice", "created").Create+";\n")
	for _, tp := range p.Tables {
		base := "redshift_" + tp.Source.Name
		golden(t, base+"_ddl.sql", object(t, p, KindTable, tp.Target.Schema, tp.Target.Name).Create+";\n\n"+
			object(t, p, KindTable, tp.Deleted.Schema, tp.Deleted.Name).Create+";\n")
		golden(t, base+"_merge.sql", strings.Join(tp.Merge, ";\n\n")+";\n")
		golden(t, base+"_pending.sql", PendingSQL(p, tp)+";\n")
	}
	golden(t, "redshift_plan.txt", p.String())
}

func TestGoldenPostgresMerge(t *testing.T) {
	// The Postgres text is executed by the merge tests; pinning the
	// customers merge shows a reviewer both spellings side by side.
	p := mustPlan(t, seedConfig(Postgres, customers()))
	golden(t, "postgres_customers_merge.sql", strings.Join(p.Tables[0].Merge, ";\n\n")+";\n")
}

func TestGoldenKMS(t *testing.T) {
	cfg := seedConfig(Redshift, customers())
	cfg.KMSKeyARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	golden(t, "iam_permission_policy_kms.json", string(mustPlan(t, cfg).PermissionPolicy)+"\n")
}

// A stream in another account, read through a chain of roles, in another
// region than the cluster: the external schema names the stream's REGION
// and the whole chain, and the plan prints each role's policies.
// https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_EXTERNAL_SCHEMA.html
// https://docs.aws.amazon.com/redshift/latest/mgmt/authorizing-redshift-service-chaining-roles.html
func TestGoldenChainedRoles(t *testing.T) {
	cfg := seedConfig(Redshift, customers())
	cfg.Region, cfg.AccountID = "eu-west-1", "210987654321"
	cfg.ChainRoleARNs = []string{"arn:aws:iam::210987654321:role/reads-shop-stream"}
	p := mustPlan(t, cfg)
	ext := object(t, p, KindExternalSchema, "sluice_kinesis", "").Create
	if !strings.Contains(ext, "REGION 'eu-west-1'") || !strings.Contains(ext, "IAM_ROLE '"+cfg.RoleARN+","+cfg.ChainRoleARNs[0]+"'") {
		t.Errorf("external schema lacks the region or the chain:\n%s", ext)
	}
	var b strings.Builder
	b.WriteString(ext + ";\n")
	for _, r := range p.Roles {
		b.WriteString("\n-- trust policy of " + r.Role + "\n" + string(r.Trust) + "\n-- permission policy of " + r.Role + "\n" + string(r.Permission) + "\n")
	}
	golden(t, "chained_roles.txt", b.String())
}

// Every session sluice opens pins its time zone to UTC (TIMESTAMPTZ text
// and checksums must not depend on the user's default) and makes
// identifiers case-sensitive.
// https://docs.aws.amazon.com/redshift/latest/dg/r_timezone_config.html
func TestSessionPinsUTC(t *testing.T) {
	got := strings.Join(Redshift.Session(), "; ")
	for _, want := range []string{"SET timezone TO 'UTC'", "SET enable_case_sensitive_identifier TO true"} {
		if !strings.Contains(got, want) {
			t.Errorf("Redshift session %q lacks %q", got, want)
		}
	}
	if got := strings.Join(Postgres.Session(), "; "); !strings.Contains(got, "UTC") {
		t.Errorf("Postgres stand-in session %q does not pin UTC", got)
	}
}

// A table whose merge would need a temporary table over Redshift's 1,600
// columns is refused when planned, with the reason, instead of failing in
// every merge. Each TOAST-able column takes three columns there.
// https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_TABLE_usage.html
func TestPlanRefusesTooWideMerge(t *testing.T) {
	wide := func(n int) *change.Table {
		tb := &change.Table{Schema: "public", Name: "wide", Version: 1, Key: []int{0}, Columns: []change.Column{
			{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true}}}
		for i := 0; i < n; i++ {
			tb.Columns = append(tb.Columns, change.Column{Name: fmt.Sprintf("c%d", i), Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true})
		}
		return tb
	}
	p := mustPlan(t, seedConfig(Redshift, wide(500)))
	for _, s := range p.Tables[0].Merge {
		if strings.HasPrefix(s, "CREATE TEMP TABLE \"_sluice_changes\"") && mergeWidth(p.Tables[0].Columns, false) != 4+1+501+500+2+500+1 {
			t.Errorf("mergeWidth does not count the merge's widest table")
		}
	}
	_, err := NewPlan(seedConfig(Redshift, wide(540)))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "public.wide") || !strings.Contains(err.Error(), "1600 columns") {
		t.Fatalf("NewPlan of 540 text columns: err = %v, want a refusal naming the table and the limit", err)
	}
}
