package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaStreamingView plays Redshift's streaming ingestion from a Kafka
// topic (FROM MSK / FROM KAFKA) against a Postgres landing table, where no
// Redshift can run: each Refresh reads every partition of Topic from where
// the previous one stopped up to the partition's end as the refresh began
// (Redshift reads "until the view reaches parity with the last offset"),
// and appends the records, with their real partitions and offsets, to
// Table, whose columns are those of the Kafka streaming view
// (kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp,
// kafka_key, kafka_headers, refresh_time, and the value as jsonb), each
// partition in offset order.
// https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-getting-started-MSK.html
//
// The value is parsed the way Redshift's JSON_PARSE does by default (see
// StreamingView): a record it would refuse lands without "data", its bytes
// in "unparsed_data". Headers land as a JSON array of {"key", "value"}
// objects (sluice's producer sets none; the merge never reads them).
// After a failed Refresh, start a new view over a fresh landing table: the
// client has moved past records it may not have landed.
type KafkaStreamingView struct {
	Brokers []string
	Topic   string
	Table   string // the landing table, quoted and qualified

	cl   *kgo.Client
	next map[int32]int64 // partition -> next offset to land
}

// Close releases the client.
func (v *KafkaStreamingView) Close() {
	if v.cl != nil {
		v.cl.Close()
		v.cl = nil
	}
}

// Refresh lands what the topic holds beyond the last refresh and returns
// how many records it landed.
func (v *KafkaStreamingView) Refresh(ctx context.Context, conn *pgx.Conn) (int, error) {
	if v.cl == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(v.Brokers...), kgo.ConsumeTopics(v.Topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return 0, fmt.Errorf("kafka client: %w", err)
		}
		v.cl, v.next = cl, map[int32]int64{}
	}
	ends, err := kadm.NewClient(v.cl).ListEndOffsets(ctx, v.Topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets of %s: %w", v.Topic, err)
	}
	if err := ends.Error(); err != nil {
		return 0, fmt.Errorf("list end offsets of %s: %w", v.Topic, err)
	}
	behind := func() bool {
		behind := false
		ends.Each(func(o kadm.ListedOffset) {
			if v.next[o.Partition] < o.Offset {
				behind = true
			}
		})
		return behind
	}
	n := 0
	for behind() {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		fs := v.cl.PollFetches(pctx)
		timedOut := pctx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if timedOut {
			return n, fmt.Errorf("read %s: no records within 10s though partitions are behind their end offsets", v.Topic)
		}
		for _, fe := range fs.Errors() {
			return n, fmt.Errorf("fetch %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var b pgx.Batch
		fs.EachRecord(func(r *kgo.Record) {
			var data *string
			var unparsed []byte
			if jsonParseAccepts(r.Value) {
				s := string(r.Value)
				data = &s
			} else {
				unparsed = r.Value
			}
			var headers *string
			if len(r.Headers) > 0 {
				hs := make([]map[string]string, len(r.Headers))
				for i, h := range r.Headers {
					hs[i] = map[string]string{"key": h.Key, "value": string(h.Value)}
				}
				j, _ := json.Marshal(hs)
				s := string(j)
				headers = &s
			}
			tsType := "C" // CreateTime
			if r.Attrs.TimestampType() == 1 {
				tsType = "L" // LogAppendTime
			}
			b.Queue(`INSERT INTO `+v.Table+` ("kafka_partition", "kafka_offset", "kafka_timestamp_type", "kafka_timestamp", "kafka_key", "kafka_headers", "refresh_time", "data", "unparsed_data")
VALUES ($1, $2, $3, $4, $5, $6::jsonb, now(), $7::jsonb, $8)`,
				int64(r.Partition), r.Offset, tsType, r.Timestamp.UTC(), r.Key, headers, data, unparsed)
			if r.Offset+1 > v.next[r.Partition] {
				v.next[r.Partition] = r.Offset + 1
			}
			n++
		})
		if b.Len() > 0 {
			// One batch is one implicit transaction: a refresh's records of
			// a poll land together, each partition's in offset order.
			if err := conn.SendBatch(ctx, &b).Close(); err != nil {
				return n, fmt.Errorf("land records: %w", err)
			}
		}
	}
	return n, nil
}
