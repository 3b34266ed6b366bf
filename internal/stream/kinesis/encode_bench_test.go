package kinesis

import (
	"strconv"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	core "github.com/sluice-dev/sluice/internal/stream"
)

// BenchmarkEncode measures what the sink does per change before any call:
// the JSON change record and the partition key.
func BenchmarkEncode(b *testing.B) {
	cs := changes(1000, 1000, 0)
	for i := range cs {
		cs[i].After[1] = change.V(change.KindText, "a value of some length "+strconv.Itoa(i))
	}
	meta := change.RecordMeta{Pipeline: "bench", Database: "app", Emitted: time.Now()}
	var buf, pk []byte
	size := 0
	for i := range cs {
		size += len(change.AppendRecord(nil, &cs[i], meta)) + len(core.AppendPartitionKey(nil, &cs[i]))
	}
	b.SetBytes(int64(size / len(cs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &cs[i%len(cs)]
		buf = change.AppendRecord(buf[:0], c, meta)
		pk = core.AppendPartitionKey(pk[:0], c)
	}
}

// BenchmarkPartitionKeyHashed is the slow path: a key over 256 bytes.
func BenchmarkPartitionKeyHashed(b *testing.B) {
	c := changes(1, 1, 0)[0]
	c.Table = &change.Table{Schema: "public", Name: "t", Columns: itemsTable.Columns, Key: []int{1}}
	c.After[1] = change.V(change.KindText, string(make([]byte, 300)))
	var pk []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		pk = core.AppendPartitionKey(pk[:0], &c)
	}
}

// BenchmarkDecode measures what the reader does per record: decode and
// intern the table.
func BenchmarkDecode(b *testing.B) {
	cs := changes(1000, 1000, 0)
	meta := change.RecordMeta{Pipeline: "bench", Database: "app", Emitted: time.Now()}
	recs := make([][]byte, len(cs))
	size := 0
	for i := range cs {
		recs[i] = change.AppendRecord(nil, &cs[i], meta)
		size += len(recs[i])
	}
	var in core.Interner
	b.SetBytes(int64(size / len(cs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := change.DecodeRecord(recs[i%len(recs)])
		if err != nil {
			b.Fatal(err)
		}
		d.Change.Table = in.Intern(d.Change.Table)
	}
}
