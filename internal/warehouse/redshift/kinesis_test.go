package redshift

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// The merge over records that went through a local Kinesis (kinesalite)
// with the real SDK: real shard ids and sequence numbers, several refreshes
// and merges, duplicates from producer retries.
func TestMergeFromKinesalite(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	const stream = "sluice-accounts"
	if err := k.CreateStream(ctx, stream, 3); err != nil {
		t.Fatal(err)
	}
	client := k.Client()
	e := newEnv(t, accounts())
	const rounds, per = 4, 75
	w := &workload{rng: newRand(11), tbl: accounts(), model: map[int]acct{}, unchangedKeys: map[int]bool{}, last: map[int]int{}, chunk: per}
	for len(w.changes) < rounds*per {
		w.step()
	}
	r := &testenv.StreamingView{Client: client, Stream: stream, Table: `"_sluice"."hubert-redshift"`}
	total := 0
	for round := 0; round < rounds; round++ {
		end := (round + 1) * per
		if round == rounds-1 {
			end = len(w.changes)
		}
		batch := append([]change.Change{}, w.changes[round*per:end]...)
		// A producer's batch reaches the shards in any order.
		w.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		if round > 0 { // retried puts of the round before
			batch = append(batch, w.changes[round*per-3:round*per]...)
		}
		var entries []types.PutRecordsRequestEntry
		for _, c := range batch {
			l := record(c)
			entries = append(entries, types.PutRecordsRequestEntry{Data: l.data, PartitionKey: aws.String(l.partition)})
		}
		for len(entries) > 0 {
			n := min(len(entries), 500)
			out, err := client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries[:n]})
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToInt32(out.FailedRecordCount) != 0 {
				t.Fatalf("%d records failed", aws.ToInt32(out.FailedRecordCount))
			}
			entries = entries[n:]
		}
		n, err := r.Refresh(ctx, e.conn)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		e.merge()
		e.merge()
	}
	if total < len(w.changes) {
		t.Fatalf("read %d records from the stream, want at least %d", total, len(w.changes))
	}
	equalLines(t, "table merged from kinesalite", e.dump(dumpAccounts), w.want())
	// Sequence numbers are real: 56 digits, over DECIMAL(38); each shard has a watermark.
	rows, err := e.db.Query(ctx, `SELECT count(*), min(length("sequence_number")) FROM "_sluice"."watermarks"`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(*rows[0][0], " ", *rows[0][1]); got != "3 56" {
		t.Errorf("watermarks: count and shortest sequence number = %s, want 3 56", got)
	}
}

// Records Redshift's JSON_PARSE refuses (a text over 64 KB, a json value
// with a key twice) are not lost without a word: the streaming view keeps
// them unparsed (the stand-in parses as JSON_PARSE does), the merge of
// their table stops naming them, and goes on once they are listed as
// skipped. The producer's check refuses the same records.
// https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-getting-started.html
// https://docs.aws.amazon.com/redshift/latest/dg/super-configurations.html
func TestUnparseableRecordsStopTheMerge(t *testing.T) {
	ctx := context.Background()
	k := testenv.NewKinesalite(t)
	const stream = "sluice-docs"
	if err := k.CreateStream(ctx, stream, 2); err != nil {
		t.Fatal(err)
	}
	client := k.Client()
	tbl := docs()
	e := newEnv(t, tbl, customers())
	var entries []types.PutRecordsRequestEntry
	refused := 0
	for i, r := range [][4]string{
		{"fine", "", `{"a": 1}`, `{"b": 2}`},
		{strings.Repeat("x", 70000), "", "", ""},
		{"dup", "", `{"a": 1, "a": 2}`, ""},
		{"also fine", "\x01", "", `{"k": "v"}`},
	} {
		c, rec := docRecord(i+1, r[0], r[1], r[2], r[3])
		if RefuseRecord(&c, rec) != "" {
			refused++
		}
		entries = append(entries, types.PutRecordsRequestEntry{Data: rec, PartitionKey: aws.String(fmt.Sprintf("app.docs:%d", i+1))})
	}
	if refused != 2 {
		t.Errorf("the producer's check refuses %d of the records, want 2", refused)
	}
	out, err := client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
		t.Fatalf("put: %v, %+v", err, out)
	}
	v := &testenv.StreamingView{Client: client, Stream: stream, Table: `"_sluice"."hubert-redshift"`}
	if n, err := v.Refresh(ctx, e.conn); err != nil || n != 4 {
		t.Fatalf("refresh: %d records, %v", n, err)
	}
	err = Merge(ctx, e.db, e.plan)
	if !errors.Is(err, ErrUnparseable) || strings.Count(err.Error(), `INSERT INTO "_sluice"."skipped"`) != 2 {
		t.Fatalf("merge: err = %v, want ErrUnparseable listing both records", err)
	}
	// The guard inside the transaction holds too.
	if err := e.db.ExecTx(ctx, e.plan.Tables[0].Merge); err == nil || !strings.Contains(err.Error(), "could not be parsed by Redshift") {
		t.Fatalf("merge statements: err = %v, want the in-transaction guard", err)
	}
	const dump = `SELECT "id", "body" FROM "app"."docs"`
	equalLines(t, "nothing merged", e.dump(dump), nil)
	n, err := Pending(ctx, e.db, e.plan)
	if err != nil || n[tbl.ID()] != 4 || n[customers().ID()] != 0 {
		t.Fatalf("pending = %v (%v), want the 4 records of app.docs, none of customers", n, err)
	}
	// Someone decides to go on without them.
	rows, err := e.db.Query(ctx, UnparsedSQL(e.plan, e.plan.Tables[0]))
	if err != nil || len(rows) != 2 {
		t.Fatalf("unparsed records: %v, %v", rows, err)
	}
	for _, r := range rows {
		if err := e.db.Exec(ctx, `INSERT INTO "_sluice"."skipped" VALUES ('"app"."docs"', `+change.QuoteLiteral(*r[0])+", "+change.QuoteLiteral(*r[1])+", now())"); err != nil {
			t.Fatal(err)
		}
	}
	e.merge()
	equalLines(t, "merged without the skipped records", e.dump(dump), []string{"1|fine", "4|also fine"})
}
