package kinesis

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// maxPartitionKey is Kinesis' limit on a partition key (256 Unicode
// characters). Counting bytes instead keeps us safely inside it.
const maxPartitionKey = 256

// appendPartitionKey appends the partition key of a change: the table and the
// key values, so that every change of one row goes to one shard, in order.
//
// Form: schema.table:v1,v2 with each key value in its record (JSON) form, so
// strings are quoted and escaped and the join is unambiguous. A schema or
// table name holding '.', ':' or '"' is written quoted as in SQL. A key
// longer than 256 bytes is replaced by "sha256:" and the hex digest of the
// whole key: still stable, still one shard per row. A truncate has no key:
// its partition key is the table part alone.
func appendPartitionKey(dst []byte, c *change.Change) []byte {
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
	if len(dst)-start <= maxPartitionKey {
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

// lane spreads keys over the sink's concurrent senders; one key always maps
// to one lane, so its records are sent one call after another, in order.
func lane(pk string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(pk))
	return int(h.Sum32() % uint32(n))
}
