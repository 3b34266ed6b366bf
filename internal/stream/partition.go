package stream

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// MaxPartitionKey is Kinesis' limit on a partition key (256 Unicode
// characters). Counting bytes instead keeps us safely inside it. Every
// transport uses the same bound, so a change has one partition key whatever
// stream carries it (Kafka's record key is the same string).
const MaxPartitionKey = 256

// AppendPartitionKey appends the partition key of a change: the table and the
// key values, so that every change of one row goes to one shard or
// partition, in order. A keyless table's key is the whole row (its
// identity): equal rows share a partition, so their inserts and deletes stay
// in order.
//
// Form: schema.table:v1,v2 with each key value in its record (JSON) form, so
// strings are quoted and escaped and the join is unambiguous. A schema or
// table name holding '.', ':' or '"' is written quoted as in SQL. A key
// longer than 256 bytes is replaced by "sha256:" and the hex digest of the
// whole key: still stable, still one shard per row. A truncate has no key:
// its partition key is the table part alone.
func AppendPartitionKey(dst []byte, c *change.Change) []byte {
	start := len(dst)
	dst = appendName(dst, c.Table.Schema)
	dst = append(dst, '.')
	dst = appendName(dst, c.Table.Name)
	dst = append(dst, ':')
	for i, v := range c.Key() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = change.AppendValueJSON(dst, v)
	}
	if len(dst)-start <= MaxPartitionKey {
		return dst
	}
	sum := sha256.Sum256(dst[start:])
	dst = append(dst[:start], "sha256:"...)
	return hex.AppendEncode(dst, sum[:])
}

func appendName(dst []byte, s string) []byte {
	if strings.ContainsAny(s, `.:"`) {
		return append(dst, change.QuoteIdent(s)...)
	}
	return append(dst, s...)
}

// Spread maps a partition key to one of n lanes (Kinesis' concurrent
// senders, Kafka's partitions): FNV-1a of the key modulo n. One key always
// maps to one lane, so its records travel one after another, in order. The
// function is part of the stream's contract: a Kafka topic written by one
// sluice version is partitioned the same way by the next.
func Spread(pk string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(pk))
	return int(h.Sum32() % uint32(n))
}
