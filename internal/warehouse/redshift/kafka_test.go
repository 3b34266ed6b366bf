package redshift

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/testenv"
)

const testMSKCluster = "arn:aws:kafka:us-east-1:123456789012:cluster/shop/0b1c2d3e-4f56-7890-abcd-ef1234567890-7"

// mskConfig is seedConfig reading the topic shop.changes of an MSK cluster
// instead of the Kinesis stream.
func mskConfig(d Dialect, tables ...*change.Table) Config {
	c := seedConfig(d, tables...)
	c.StreamName, c.Region, c.AccountID = "", "", ""
	c.Kafka = &KafkaSource{Topic: "shop.changes", ClusterARN: testMSKCluster}
	return c
}

// Everything the plan renders for a topic of an MSK cluster with IAM
// authentication: the policies, the external schema FROM MSK, the
// streaming view over the Kafka columns, the watermarks per partition,
// the merge (keyed and keyless) and the queries that name landed records.
// https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-getting-started-MSK.html
func TestGoldenMSK(t *testing.T) {
	p := mustPlan(t, mskConfig(Redshift, customers(), events()))
	golden(t, "msk_iam_permission_policy.json", string(p.PermissionPolicy)+"\n")
	golden(t, "msk_external_schema.sql", object(t, p, KindExternalSchema, "sluice_kafka", "").Create+";\n")
	golden(t, "msk_streaming_view.sql", object(t, p, KindMaterializedView, "_sluice", "shop.changes").Create+";\n")
	golden(t, "msk_state_tables.sql", object(t, p, KindTable, "_sluice", "watermarks").Create+";\n\n"+
		object(t, p, KindTable, "_sluice", "skipped").Create+";\n")
	golden(t, "msk_customers_merge.sql", strings.Join(p.Tables[0].Merge, ";\n\n")+";\n")
	golden(t, "msk_events_merge.sql", strings.Join(p.Tables[1].Merge, ";\n\n")+";\n")
	golden(t, "msk_customers_pending.sql", PendingSQL(p, p.Tables[0])+";\n\n"+UnparsedSQL(p, p.Tables[0])+";\n")
	golden(t, "msk_plan.txt", p.String())
	// The stand-in's landing table and merge, the text the tests execute.
	pp := mustPlan(t, mskConfig(Postgres, customers()))
	golden(t, "postgres_kafka_landing.sql", object(t, pp, KindTable, "_sluice", "shop.changes").Create+";\n")
	golden(t, "postgres_kafka_customers_merge.sql", strings.Join(pp.Tables[0].Merge, ";\n\n")+";\n")
}

// Every other form of the external schema, with the policy each needs:
// MSK without authentication, MSK and Confluent Cloud with mTLS (the
// certificate in ACM, or in Secrets Manager), self-managed Kafka without
// authentication and without a role.
// https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-mtls.html
func TestGoldenKafkaForms(t *testing.T) {
	forms := []struct {
		name string
		set  func(c *Config)
	}{
		{"MSK, no authentication", func(c *Config) { c.Kafka.Authentication = AuthNone }},
		{"MSK, mTLS with an ACM certificate", func(c *Config) {
			c.Kafka.Authentication = AuthMTLS
			c.Kafka.CertificateARN = "arn:aws:acm:us-east-1:123456789012:certificate/6a7b8c9d-0e1f-2a3b-4c5d-6e7f8a9b0c1d"
		}},
		{"Confluent Cloud, mTLS with a Secrets Manager secret", func(c *Config) {
			c.Kafka.ClusterARN, c.Kafka.URI = "", "lkc-abc123.us-east-1.aws.confluent.cloud:9092"
			c.Kafka.Authentication = AuthMTLS
			c.Kafka.SecretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sluice-kafka-client-AbCdEf"
		}},
		{"self-managed Kafka, no authentication, no role", func(c *Config) {
			c.Kafka.ClusterARN, c.Kafka.URI = "", "kafka-1.internal.example.com:9092"
			c.RoleARN = ""
		}},
	}
	var b strings.Builder
	for _, f := range forms {
		cfg := mskConfig(Redshift, customers())
		f.set(&cfg)
		p := mustPlan(t, cfg)
		fmt.Fprintf(&b, "-- %s\n%s;\n", f.name, object(t, p, KindExternalSchema, "sluice_kafka", "").Create)
		if p.PermissionPolicy == nil {
			b.WriteString("-- no permission policy\n\n")
			continue
		}
		fmt.Fprintf(&b, "-- permission policy\n%s\n\n", p.PermissionPolicy)
	}
	golden(t, "kafka_forms.txt", b.String())
}

// Every bad Kafka setting is refused with the key and the fix.
func TestKafkaConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		set  func(c *Config)
		want string
	}{
		"neither":          {func(c *Config) { c.Kafka.ClusterARN = "" }, "set exactly one of redshift.msk_cluster_arn"},
		"both":             {func(c *Config) { c.Kafka.URI = "b:9092" }, "set exactly one of redshift.msk_cluster_arn"},
		"bad cluster":      {func(c *Config) { c.Kafka.ClusterARN = "arn:aws:kafka:us-east-1:123456789012:topic/x" }, "redshift.msk_cluster_arn"},
		"bad uri":          {func(c *Config) { c.Kafka.ClusterARN, c.Kafka.URI = "", "https://b" }, "redshift.kafka_uri"},
		"iam off MSK":      {func(c *Config) { c.Kafka.ClusterARN, c.Kafka.URI, c.Kafka.Authentication = "", "b:9092", "iam" }, "iam is for Amazon MSK only"},
		"unknown auth":     {func(c *Config) { c.Kafka.Authentication = "scram" }, `redshift.kafka_authentication "scram"`},
		"mtls, no cert":    {func(c *Config) { c.Kafka.Authentication = "mtls" }, "set exactly one of redshift.kafka_certificate_arn"},
		"cert, not mtls":   {func(c *Config) { c.Kafka.SecretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:s" }, "are for kafka_authentication mtls"},
		"MSK needs role":   {func(c *Config) { c.RoleARN = "" }, "redshift.role_arn is empty"},
		"bad topic":        {func(c *Config) { c.Kafka.Topic = "a topic" }, `Kafka topic "a topic"`},
		"long topic":       {func(c *Config) { c.Kafka.Topic = strings.Repeat("t", 130) }, "longer than Redshift's 127-byte"},
		"and a stream":     {func(c *Config) { c.StreamName = "shop" }, "Redshift reads one of them"},
		"kms":              {func(c *Config) { c.KMSKeyARN = "arn:aws:kms:us-east-1:123456789012:key/k" }, "kms_key_arn is for a Kinesis stream"},
		"region disagree":  {func(c *Config) { c.Region = "eu-west-1" }, "disagrees with region"},
		"upper-case topic": {func(c *Config) { c.Kafka.Topic = "Shop" }, "set enable_case_sensitive_identifier"},
	} {
		cfg := mskConfig(Redshift, customers())
		tc.set(&cfg)
		_, err := NewPlan(cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
}

// The merge over records that went through Kafka (franz-go's in-process
// kfake broker) and the Kafka streaming view's stand-in: real partitions
// and offsets, several refreshes and merges, each producer batch in shuffled
// order, and the tail of the round before produced again (a producer's
// retry). The mirror ends exactly as the model, and there is one watermark
// per partition at its last offset.
func TestMergeFromKfake(t *testing.T) {
	ctx := context.Background()
	const topic, partitions = "shop.changes", 3
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	e := newEnvConfig(t, mskConfig(Postgres, accounts()))
	const rounds, per = 4, 75
	w := &workload{rng: newRand(13), tbl: accounts(), model: map[int]acct{}, unchangedKeys: map[int]bool{}, last: map[int]int{}, chunk: per}
	for len(w.changes) < rounds*per {
		w.step()
	}
	v := &testenv.KafkaStreamingView{Brokers: kc.ListenAddrs(), Topic: topic, Table: `"_sluice"."shop.changes"`}
	defer v.Close()
	total, produced := 0, 0
	for round := 0; round < rounds; round++ {
		end := (round + 1) * per
		if round == rounds-1 {
			end = len(w.changes)
		}
		batch := append([]change.Change{}, w.changes[round*per:end]...)
		w.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		if round > 0 {
			batch = append(batch, w.changes[round*per-3:round*per]...)
		}
		var recs []*kgo.Record
		for _, c := range batch {
			l := record(c)
			if c.Key() == nil { // a truncate goes to every partition, as the sink puts it
				for p := range int32(partitions) {
					recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(l.partition), Value: l.data})
				}
				continue
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(l.partition), Value: l.data})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		produced += len(recs)
		n, err := v.Refresh(ctx, e.conn)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		e.merge()
		e.merge()
	}
	if total != produced {
		t.Fatalf("the stand-in landed %d records, %d were produced", total, produced)
	}
	equalLines(t, "table merged from kfake", e.dump(dumpAccounts), w.want())
	got := e.dump(`SELECT w."kafka_partition", w."kafka_offset" = m."o" FROM "_sluice"."watermarks" w
JOIN (SELECT "kafka_partition", max("kafka_offset") AS "o" FROM "_sluice"."shop.changes" GROUP BY 1) m ON m."kafka_partition" = w."kafka_partition"`)
	equalLines(t, "one watermark per partition, at its last offset", got, []string{"0|t", "1|t", "2|t"})
	n, err := Pending(ctx, e.db, e.plan)
	if err != nil || n[accounts().ID()] != 0 {
		t.Fatalf("pending after the last merge = %v (%v), want 0", n, err)
	}
}

// A record JSON_PARSE refuses, on a topic, stops the merge naming its
// partition and offset, and the merge goes on once it is listed as
// skipped, as with Kinesis.
func TestKafkaUnparseableRecordStopsTheMerge(t *testing.T) {
	ctx := context.Background()
	const topic = "shop.changes"
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	tbl := docs()
	e := newEnvConfig(t, mskConfig(Postgres, tbl))
	var recs []*kgo.Record
	for i, body := range []string{"fine", strings.Repeat("x", 70000), "also fine"} {
		_, rec := docRecord(i+1, body, "", "", "")
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "app.docs:%d", i+1), Value: rec})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	v := &testenv.KafkaStreamingView{Brokers: kc.ListenAddrs(), Topic: topic, Table: `"_sluice"."shop.changes"`}
	defer v.Close()
	if n, err := v.Refresh(ctx, e.conn); err != nil || n != 3 {
		t.Fatalf("refresh: %d records, %v", n, err)
	}
	err = Merge(ctx, e.db, e.plan)
	if !errors.Is(err, ErrUnparseable) || !strings.Contains(err.Error(), fmt.Sprintf("partition %d offset %d (key app.docs:2)", recs[1].Partition, recs[1].Offset)) ||
		!strings.Contains(err.Error(), `INSERT INTO "_sluice"."skipped" ("table_name", "kafka_partition", "kafka_offset", "skipped_at")`) {
		t.Fatalf("merge: err = %v, want ErrUnparseable naming partition and offset", err)
	}
	if err := e.db.Exec(ctx, fmt.Sprintf(`INSERT INTO "_sluice"."skipped" VALUES ('"app"."docs"', %d, %d, now())`, recs[1].Partition, recs[1].Offset)); err != nil {
		t.Fatal(err)
	}
	e.merge()
	equalLines(t, "merged without the skipped record", e.dump(`SELECT "id", "body" FROM "app"."docs"`), []string{"1|fine", "3|also fine"})
}
