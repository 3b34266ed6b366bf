package redshift

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/verify"
	"github.com/sluice-dev/sluice/internal/warehouse"
	pgwarehouse "github.com/sluice-dev/sluice/internal/warehouse/postgres"
)

func TestGoldenChecksumSQL(t *testing.T) {
	p := mustPlan(t, seedConfig(Redshift, customers(), allTypes()))
	sum, err := ChecksumSQL(Redshift, p.Tables[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := BucketRowsSQL(Redshift, p.Tables[0], 64, 5, 1000)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "redshift_customers_checksum.sql", sum+";\n\n"+rows+";\n")
	// Forms Redshift cannot reproduce are refused by name, not guessed.
	_, err = ChecksumSQL(Redshift, p.Tables[1], 64)
	if err == nil || !strings.Contains(err.Error(), "has no checksum form") {
		t.Fatalf("checksum of a table with SUPER columns: err = %v, want a refusal naming the column", err)
	}
	// Floats too: their canonical form is scientific, and Redshift's numeric
	// formats have no EEEE.
	// https://docs.aws.amazon.com/redshift/latest/dg/r_Numeric_formating.html
	floats := &change.Table{Schema: "public", Name: "readings", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "value", Type: change.Type{Name: "double precision", Kind: change.KindFloat}, Nullable: true},
	}}
	fp := mustPlan(t, seedConfig(Redshift, floats))
	sql, err := ChecksumSQL(Redshift, fp.Tables[0], 64)
	if err == nil || !strings.Contains(err.Error(), `column "value"`) || strings.Contains(sql, "EEEE") {
		t.Fatalf("checksum of a float column: sql %q, err = %v; want a refusal naming the column, never EEEE", sql, err)
	}
}

// The mirror, merged from records, checksums equal to a Postgres table
// holding the same rows in their source types; a changed row is named.
func TestChecksumsMatchSource(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, accounts())
	w := &workload{rng: newRand(7), tbl: accounts(), model: map[int]acct{}, unchangedKeys: map[int]bool{}, last: map[int]int{}}
	for len(w.changes) < 200 {
		w.step()
	}
	var recs []landed
	for _, c := range w.changes {
		recs = append(recs, record(c))
	}
	e.land(recs...)
	e.merge()

	// The source: same rows, the source's own types.
	stmts := []string{`CREATE SCHEMA "src"`, `CREATE TABLE "src"."accounts" ("id" integer PRIMARY KEY, "name" varchar(40) NOT NULL, "note" text, "payload" jsonb, "amount" numeric(12,2), "blob" bytea, "seen" timestamptz)`}
	lit := func(p *string, cast string) string {
		if p == nil {
			return "NULL"
		}
		return change.QuoteLiteral(*p) + cast
	}
	for id, a := range w.model {
		blob := "NULL"
		if a.blob != nil {
			blob = "decode(" + change.QuoteLiteral(*a.blob) + ", 'hex')"
		}
		seen := "NULL"
		if a.seen != nil {
			seen = change.QuoteLiteral(*a.seen+"+00") + "::timestamptz"
		}
		stmts = append(stmts, `INSERT INTO "src"."accounts" VALUES (`+itoa(id)+", "+lit(a.name, "")+", "+lit(a.note, "")+", "+
			lit(a.payload, "::jsonb")+", "+lit(a.amount, "::numeric")+", "+blob+", "+seen+")")
	}
	if err := e.db.ExecTx(ctx, stmts); err != nil {
		t.Fatal(err)
	}
	srcPlan := *e.plan
	srcTable := *e.plan.Tables[0]
	srcTable.Target = change.TableID{Schema: "src", Name: "accounts"}
	srcPlan.Tables = []*TablePlan{&srcTable}
	src, dst := srcPlan.VerifySide(e.db), e.plan.VerifySide(e.db)

	r, err := verify.Compare(ctx, accounts(), src, dst, verify.Options{Buckets: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Match || r.SourceRows != int64(len(w.model)) || r.SourceRows == 0 {
		t.Fatalf("compare: %+v, want a match over %d rows", r, len(w.model))
	}
	// The source side as sluice verify computes it for a Postgres source
	// (the shared generator with the Postgres warehouse dialect) agrees
	// bucket for bucket with the mirror's.
	rows, err := e.db.Query(ctx, warehouse.ChecksumSQL(pgwarehouse.Dialect{}, change.TableID{Schema: "src", Name: "accounts"}, accounts(), 8))
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := dst.Checksums(ctx, accounts(), 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(mirror) {
		t.Fatalf("source has %d buckets, mirror %d", len(rows), len(mirror))
	}
	for i, r := range rows {
		if got := fmt.Sprint(*r[0], " ", *r[1], " ", *r[2]); got != fmt.Sprint(mirror[i].ID, " ", mirror[i].Rows, " ", mirror[i].Sum) {
			t.Errorf("bucket %d: source (shared generator) %s, mirror %+v", i, got, mirror[i])
		}
	}
	var some int
	for id := range w.model {
		some = id
		break
	}
	if err := e.db.ExecTx(ctx, []string{`UPDATE "app"."accounts" SET "name" = "name" || '!' WHERE "id" = ` + itoa(some)}); err != nil {
		t.Fatal(err)
	}
	r, err = verify.Compare(ctx, accounts(), src, dst, verify.Options{Buckets: 8})
	if err != nil {
		t.Fatal(err)
	}
	if r.Match || len(r.Different) != 1 || r.Different[0] != "("+itoa(some)+")" {
		t.Fatalf("compare after changing row %d: %+v", some, r)
	}
}
