package redshift

import (
	"context"
	"fmt"
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
