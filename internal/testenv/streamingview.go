package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/jackc/pgx/v5"
)

// StreamingView plays Redshift's streaming ingestion against a local
// Kinesis server and a Postgres landing table, where no Redshift can run:
// each Refresh reads every shard from where the previous one stopped and
// appends the records, with their real shard ids and sequence numbers, to
// Table, whose columns are those of Redshift's streaming view
// (approximate_arrival_timestamp, partition_key, shard_id, sequence_number,
// refresh_time, and the record as jsonb), each shard in sequence order.
//
// It parses the way Redshift's JSON_PARSE does by default, not the way
// jsonb does: a record with a string over 65,535 bytes or a key repeated in
// an object (jsonb would keep the last one, silently) is landed without
// "data", its bytes in "unparsed_data", as sluice's streaming view keeps
// it. https://docs.aws.amazon.com/redshift/latest/dg/super-configurations.html,
// https://docs.aws.amazon.com/redshift/latest/dg/limitations-super.html
type StreamingView struct {
	Client *kinesis.Client
	Stream string
	Table  string // the landing table, quoted and qualified

	next map[string]*string // shard -> iterator to continue from
}

// Refresh lands what the stream holds beyond the last refresh and returns
// how many records it landed.
func (v *StreamingView) Refresh(ctx context.Context, conn *pgx.Conn) (int, error) {
	if v.next == nil {
		v.next = map[string]*string{}
	}
	shards, err := v.Client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(v.Stream)})
	if err != nil {
		return 0, fmt.Errorf("list shards: %w", err)
	}
	n := 0
	for _, sh := range shards.Shards {
		id := aws.ToString(sh.ShardId)
		it := v.next[id]
		if it == nil {
			out, err := v.Client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
				StreamName: aws.String(v.Stream), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
			if err != nil {
				return 0, fmt.Errorf("shard iterator: %w", err)
			}
			it = out.ShardIterator
		}
		for {
			out, err := v.Client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1000)})
			if err != nil {
				return 0, fmt.Errorf("get records: %w", err)
			}
			if len(out.Records) > 0 {
				var b pgx.Batch
				for _, rec := range out.Records {
					var data *string
					var unparsed []byte
					if jsonParseAccepts(rec.Data) {
						s := string(rec.Data)
						data = &s
					} else {
						unparsed = rec.Data
					}
					b.Queue(`INSERT INTO `+v.Table+` VALUES ($1, $2, $3, $4, now(), $5::jsonb, $6)`,
						aws.ToTime(rec.ApproximateArrivalTimestamp), aws.ToString(rec.PartitionKey), id,
						aws.ToString(rec.SequenceNumber), data, unparsed)
				}
				if err := conn.SendBatch(ctx, &b).Close(); err != nil {
					return 0, fmt.Errorf("land records: %w", err)
				}
				n += len(out.Records)
			}
			it = out.NextShardIterator
			if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 {
				break
			}
		}
		v.next[id] = it
	}
	return n, nil
}

// jsonParseAccepts reports whether Redshift's JSON_PARSE, with its default
// settings, takes data: valid JSON, no string over 65,535 bytes, no key
// twice in one object.
func jsonParseAccepts(data []byte) bool {
	const maxString = 65535
	type frame struct {
		obj, expectKey bool
		keys           map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				if top != nil && top.obj {
					top.expectKey = true
				}
				stack = append(stack, &frame{obj: t == '{', expectKey: t == '{', keys: map[string]bool{}})
			} else {
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if len(t) > maxString {
				return false
			}
			if top != nil && top.obj && top.expectKey {
				if top.keys[t] {
					return false
				}
				top.keys[t], top.expectKey = true, false
				continue
			}
		}
		if top != nil && top.obj {
			top.expectKey = true
		}
	}
}
