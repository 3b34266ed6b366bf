package kinesis

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluice-dev/sluice/internal/change"
	core "github.com/sluice-dev/sluice/internal/stream"
	"github.com/sluice-dev/sluice/internal/testenv"
)

var itemsTable = &change.Table{
	Schema: "public", Name: "items", Version: 1,
	Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Key: true},
		{Name: "val", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	},
	Key: []int{0},
}

// changes makes n updates spread over keys ids 1..keys, with positions
// growing in order: change i is at commit LSN 1000+i.
func changes(n, keys int, first int) []change.Change {
	out := make([]change.Change, n)
	for i := range out {
		seq := first + i
		id := seq%keys + 1
		out[i] = change.Change{
			Op:         change.OpUpdate,
			Table:      itemsTable,
			After:      []change.Value{change.V(change.KindInt, strconv.Itoa(id)), change.V(change.KindText, "v"+strconv.Itoa(seq))},
			Pos:        change.Position{CommitLSN: change.LSN(1000 + seq), LSN: change.LSN(1000 + seq)},
			TxID:       uint32(seq),
			CommitTime: time.Unix(1_700_000_000, 0),
		}
	}
	return out
}

func fixedNow() time.Time { return time.Unix(1_750_000_000, 0) }

// streamRecord is one record read back from a stream.
type streamRecord struct {
	Shard, Seq, PK string
	Data           []byte
}

// readStream reads every record of every shard from the trim horizon, in
// each shard's order.
func readStream(t *testing.T, c *kinesis.Client, name string) []streamRecord {
	t.Helper()
	ctx := context.Background()
	ls, err := c.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	var out []streamRecord
	for _, sh := range ls.Shards {
		it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(name), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil {
			r, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range r.Records {
				out = append(out, streamRecord{Shard: *sh.ShardId, Seq: *rec.SequenceNumber, PK: *rec.PartitionKey, Data: rec.Data})
			}
			if len(r.Records) == 0 && aws.ToInt64(r.MillisBehindLatest) == 0 {
				break
			}
			iter = r.NextShardIterator
		}
	}
	return out
}

// checkPerKeyOrder checks that, for every key, the last copy of each of its
// records appears in position order, and that every position in want is on
// the stream. Duplicates are allowed (at-least-once).
func checkPerKeyOrder(t *testing.T, recs []streamRecord, want []change.Change) {
	t.Helper()
	type occ struct {
		pos  change.Position
		last int
	}
	lastIdx := map[change.Position]int{}
	byKey := map[string][]change.Position{}
	for i, r := range recs {
		d, err := change.DecodeRecord(r.Data)
		if err != nil {
			t.Fatalf("record %s/%s: %v", r.Shard, r.Seq, err)
		}
		if pk := string(core.AppendPartitionKey(nil, &d.Change)); pk != r.PK {
			t.Fatalf("record %s/%s has partition key %q, want %q", r.Shard, r.Seq, r.PK, pk)
		}
		if _, seen := lastIdx[d.Change.Pos]; !seen {
			byKey[r.PK] = append(byKey[r.PK], d.Change.Pos)
		}
		lastIdx[d.Change.Pos] = i
	}
	for _, c := range want {
		if _, ok := lastIdx[c.Pos]; !ok {
			t.Fatalf("change at %s is not on the stream", c.Pos)
		}
	}
	if len(lastIdx) != len(want) {
		t.Fatalf("stream holds %d distinct changes, want %d", len(lastIdx), len(want))
	}
	for pk, ps := range byKey {
		var lasts []occ
		for _, p := range ps {
			lasts = append(lasts, occ{p, lastIdx[p]})
		}
		// sort by last occurrence, then positions must ascend
		for i := 1; i < len(lasts); i++ {
			for j := i; j > 0 && lasts[j].last < lasts[j-1].last; j-- {
				lasts[j], lasts[j-1] = lasts[j-1], lasts[j]
			}
		}
		for i := 1; i < len(lasts); i++ {
			if !lasts[i-1].pos.Less(lasts[i].pos) {
				t.Fatalf("key %s: change %s's last copy is after that of the later change %s", pk, lasts[i-1].pos, lasts[i].pos)
			}
		}
	}
}

// faultProxy sits between the SDK and a local Kinesis server and injects
// the failures real Kinesis produces: whole calls refused (throttled, 5xx)
// and PutRecords calls that fail for some records only. A failed record is
// really not forwarded, exactly as Kinesis does not store it.
type faultProxy struct {
	t      *testing.T
	target string
	srv    *httptest.Server

	mu    sync.Mutex
	calls []proxyCall
	// decide returns, for the n-th PutRecords call (from 1), a whole-call
	// failure ("" none, or an error code) and per-record error codes ("" ok).
	decide func(n int, pks []string) (whole string, perRecord []string)
	// decideOther returns an error code ("" none, "RESET" to drop the
	// connection) for the n-th call (from 1) of any other operation.
	decideOther func(op string, n int) string
	others      map[string]int
}

type proxyCall struct {
	Records int
	Bytes   int // decoded data plus partition keys
	Failed  int
	Whole   string
}

func newFaultProxy(t *testing.T, k *testenv.Kinesis) *faultProxy {
	p := &faultProxy{t: t, target: k.Endpoint, others: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) Calls() []proxyCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyCall(nil), p.calls...)
}

type wirePut struct {
	Records []struct {
		Data            string `json:"Data"`
		PartitionKey    string `json:"PartitionKey"`
		ExplicitHashKey string `json:"ExplicitHashKey,omitempty"`
	} `json:"Records"`
	StreamName string `json:"StreamName,omitempty"`
	StreamARN  string `json:"StreamARN,omitempty"`
}

type wirePutResult struct {
	SequenceNumber string `json:"SequenceNumber,omitempty"`
	ShardId        string `json:"ShardId,omitempty"`
	ErrorCode      string `json:"ErrorCode,omitempty"`
	ErrorMessage   string `json:"ErrorMessage,omitempty"`
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndexByte(op, '.')+1:]
	if op != "PutRecords" || p.decide == nil {
		p.mu.Lock()
		p.others[op]++
		n := p.others[op]
		var fault string
		if p.decideOther != nil {
			fault = p.decideOther(op, n)
		}
		p.mu.Unlock()
		if fault != "" {
			p.fail(w, fault)
			return
		}
		p.forward(w, r, body)
		return
	}
	var in wirePut
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	pks := make([]string, len(in.Records))
	size := 0
	for i, rec := range in.Records {
		pks[i] = rec.PartitionKey
		d, _ := base64.StdEncoding.DecodeString(rec.Data)
		size += len(d) + len(rec.PartitionKey)
	}
	p.mu.Lock()
	n := len(p.calls) + 1
	whole, per := p.decide(n, pks)
	call := proxyCall{Records: len(in.Records), Bytes: size, Whole: whole}
	for _, c := range per {
		if c != "" {
			call.Failed++
		}
	}
	p.calls = append(p.calls, call)
	p.mu.Unlock()

	if whole != "" {
		p.fail(w, whole)
		return
	}
	fwd := in
	fwd.Records = fwd.Records[:0:0]
	for i, rec := range in.Records {
		if i >= len(per) || per[i] == "" {
			fwd.Records = append(fwd.Records, rec)
		}
	}
	var got struct {
		FailedRecordCount int             `json:"FailedRecordCount"`
		Records           []wirePutResult `json:"Records"`
	}
	if len(fwd.Records) > 0 {
		b, _ := json.Marshal(fwd)
		rec := httptest.NewRecorder()
		p.forward(rec, r, b)
		if rec.Code != 200 {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			p.t.Errorf("proxy: decode PutRecords response: %v", err)
		}
	}
	out := struct {
		FailedRecordCount int             `json:"FailedRecordCount"`
		Records           []wirePutResult `json:"Records"`
	}{FailedRecordCount: got.FailedRecordCount}
	j := 0
	for i := range in.Records {
		if i < len(per) && per[i] != "" {
			out.Records = append(out.Records, wirePutResult{ErrorCode: per[i], ErrorMessage: "injected by the test"})
			out.FailedRecordCount++
			continue
		}
		out.Records = append(out.Records, got.Records[j])
		j++
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// fail answers a call with an error code as Kinesis does, or with "RESET"
// drops the connection without an answer (the request was never forwarded).
func (p *faultProxy) fail(w http.ResponseWriter, code string) {
	if code == "RESET" {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN
			}
			conn.Close()
		}
		return
	}
	status := 400
	if code == "InternalFailure" || code == "ServiceUnavailable" {
		status = 500
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"__type":%q,"message":"injected by the test"}`, code)
}

func (p *faultProxy) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	for k, v := range r.Header {
		if k != "Content-Length" {
			req.Header[k] = v
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// proxiedConfig is a kinesalite/kinesis-local connection through the proxy.
func proxiedConnection(k *testenv.Kinesis, p *faultProxy, stream string) Connection {
	cfg := k.AWSConfig()
	cfg.BaseEndpoint = aws.String(p.srv.URL)
	return Connection{Stream: stream, AWS: &cfg}
}

func directConnection(k *testenv.Kinesis, stream string) Connection {
	cfg := k.AWSConfig()
	return Connection{Stream: stream, AWS: &cfg}
}
