package redshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/sluice-dev/sluice/internal/change"
)

// fakeDataAPI plays the Redshift Data API's JSON 1.1 protocol in process,
// recording every request, so the request shaping of DataAPI is checked
// against the real SDK's wire format.
type fakeDataAPI struct {
	mu       sync.Mutex
	calls    []fakeCall
	sessions int
	expired  map[string]bool
	status   map[string][]string // statement id -> statuses still to report
	failed   map[string]string
}

type fakeCall struct {
	Op   string
	Body map[string]any
}

func (f *fakeDataAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "RedshiftData.")
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	f.calls = append(f.calls, fakeCall{Op: op, Body: body})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	reply := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	id := fmt.Sprintf("stmt-%d", len(f.calls))
	switch op {
	case "ExecuteStatement", "BatchExecuteStatement":
		sess, _ := body["SessionId"].(string)
		if f.expired[sess] {
			w.WriteHeader(http.StatusBadRequest)
			reply(map[string]string{"__type": "ValidationException", "message": "Session " + sess + " is not available"})
			return
		}
		if sess == "" {
			f.sessions++
			sess = fmt.Sprintf("session-%d", f.sessions)
		}
		sql, _ := body["Sql"].(string)
		f.status[id] = []string{"SUBMITTED", "STARTED", "FINISHED"}
		if strings.Contains(sql, "boom") {
			f.status[id] = []string{"STARTED", "FAILED"}
			f.failed[id] = `ERROR: relation "boom" does not exist`
		}
		reply(map[string]any{"Id": id, "SessionId": sess})
	case "DescribeStatement":
		sid := body["Id"].(string)
		st := f.status[sid]
		cur := st[0]
		if len(st) > 1 {
			f.status[sid] = st[1:]
		}
		out := map[string]any{"Id": sid, "Status": cur, "HasResultSet": cur == "FINISHED"}
		if e, ok := f.failed[sid]; ok && cur == "FAILED" {
			out["Error"] = e
		}
		reply(out)
	case "GetStatementResult":
		if body["NextToken"] == nil {
			reply(map[string]any{"Records": [][]map[string]any{
				{{"stringValue": "a"}, {"isNull": true}, {"longValue": 5}},
			}, "TotalNumRows": 2, "NextToken": "page2"})
			return
		}
		reply(map[string]any{"Records": [][]map[string]any{
			{{"stringValue": "b"}, {"booleanValue": true}, {"doubleValue": 1.5}},
		}, "TotalNumRows": 2})
	default:
		w.WriteHeader(http.StatusBadRequest)
		reply(map[string]string{"__type": "UnknownOperationException", "message": op})
	}
}

func TestDataAPIRequestShaping(t *testing.T) {
	ctx := context.Background()
	fake := &fakeDataAPI{expired: map[string]bool{}, status: map[string][]string{}, failed: map[string]string{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	client := redshiftdata.New(redshiftdata.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "not-a-secret", ""),
	})
	a, err := NewDataAPI(client, DataAPITarget{ClusterIdentifier: "analytics", Database: "dev", SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:rs"}, Redshift)
	if err != nil {
		t.Fatal(err)
	}
	a.Poll = time.Millisecond

	rows, err := a.Query(ctx, `SELECT 1`)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(texts(rows))
	if want := "[[a NULL 5] [b true 1.5]]"; got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
	if err := a.ExecTx(ctx, []string{"DELETE FROM x", "INSERT INTO x SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	err = a.Exec(ctx, `SELECT * FROM boom`)
	if !errors.Is(err, ErrStatementFailed) || !strings.Contains(err.Error(), `relation "boom" does not exist`) {
		t.Errorf("failed statement: err = %v, want ErrStatementFailed with the server's message", err)
	}
	fake.mu.Lock()
	fake.expired["session-1"] = true
	fake.mu.Unlock()
	if err := a.Exec(ctx, `SELECT 2`); err != nil {
		t.Fatalf("after the session expired: %v", err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	var submits []string
	for _, c := range fake.calls {
		switch c.Op {
		case "ExecuteStatement", "BatchExecuteStatement":
			// The SDK fills a fresh idempotency token per call: present, not pinned.
			if tok, _ := c.Body["ClientToken"].(string); tok == "" {
				t.Errorf("%s without a ClientToken", c.Op)
			}
			delete(c.Body, "ClientToken")
			b, _ := json.Marshal(c.Body)
			submits = append(submits, c.Op+" "+string(b))
		}
	}
	golden(t, "dataapi_requests.txt", strings.Join(submits, "\n")+"\n")
}

func texts(rows [][]*string) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		for _, v := range r {
			s := "NULL"
			if v != nil {
				s = *v
			}
			out[i] = append(out[i], s)
		}
	}
	return out
}

// The authorization methods of ExecuteStatement
// (https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ExecuteStatement.html):
// a secret, a database user (clusters only), or the caller's IAM identity
// (neither), on a cluster or a workgroup.
func TestDataAPIConfig(t *testing.T) {
	for _, tc := range []DataAPITarget{
		{Database: "dev", SecretARN: "s"},
		{ClusterIdentifier: "c", WorkgroupName: "w", Database: "dev", SecretARN: "s"},
		{ClusterIdentifier: "c", SecretARN: "s"},
		{WorkgroupName: "w", Database: "dev", DbUser: "u"}, // db user is for clusters only
		{ClusterIdentifier: "c", Database: "dev", DbUser: "u", SecretARN: "s"},
	} {
		if _, err := NewDataAPI(nil, tc, Redshift); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", tc, err)
		}
	}
	for _, tc := range []DataAPITarget{
		{ClusterIdentifier: "c", Database: "dev"}, // as the caller's IAM identity
		{ClusterIdentifier: "c", Database: "dev", DbUser: "u"},
		{ClusterIdentifier: "c", Database: "dev", SecretARN: "s"},
		{WorkgroupName: "w", Database: "dev"},
		{WorkgroupName: "w", Database: "dev", SecretARN: "s"},
	} {
		if _, err := NewDataAPI(nil, tc, Redshift); err != nil {
			t.Errorf("%+v: err = %v, want it accepted", tc, err)
		}
	}
}

// A merge statement over the Data API's 100 KB limit is refused before
// anything is sent, naming the table and the way out.
func TestDataAPIStatementLimit(t *testing.T) {
	wide := &change.Table{Schema: "public", Name: "wide", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true}}}
	for i := 0; i < 120; i++ {
		wide.Columns = append(wide.Columns, change.Column{Name: fmt.Sprintf("text_column_%03d", i), Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true})
	}
	p := mustPlan(t, seedConfig(Redshift, customers(), wide))
	err := p.CheckDataAPI()
	if !errors.Is(err, ErrStatementTooLarge) || !strings.Contains(err.Error(), "public.wide") || !strings.Contains(err.Error(), "wire protocol") {
		t.Fatalf("CheckDataAPI: err = %v, want ErrStatementTooLarge naming public.wide", err)
	}
	if err := mustPlan(t, seedConfig(Redshift, customers())).CheckDataAPI(); err != nil {
		t.Fatalf("customers: %v", err)
	}
	fake := &fakeDataAPI{expired: map[string]bool{}, status: map[string][]string{}, failed: map[string]string{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	client := redshiftdata.New(redshiftdata.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "not-a-secret", "")})
	a, err := NewDataAPI(client, DataAPITarget{WorkgroupName: "w", Database: "dev"}, Redshift)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ExecTx(context.Background(), p.Tables[1].Merge); !errors.Is(err, ErrStatementTooLarge) {
		t.Fatalf("ExecTx of the wide merge: err = %v, want ErrStatementTooLarge", err)
	}
	if len(fake.calls) != 0 {
		t.Errorf("%d calls reached the Data API, want none", len(fake.calls))
	}
}
