package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/warehouse/redshift"
)

func redshiftTables() []*change.Table {
	return []*change.Table{{Schema: "public", Name: "customers", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "userid", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "name", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	}}}
}

func redshiftConfig(stream string) *config.Config {
	c := config.Default()
	c.Pipeline = "rs"
	c.Tables = []config.TableSpec{{Name: "public.customers"}}
	c.Target.URL = "redshift://u:p@cluster.example:5439/dev"
	c.Stream = &config.Stream{Role: "consumer", Kinesis: &config.Kinesis{Stream: stream}}
	c.Redshift = &config.Redshift{RoleARN: "arn:aws:iam::123456789012:role/r", Account: "123456789012", MergeInterval: time.Minute}
	return c
}

// The plan takes the stream's name, account and region from its ARN, or
// the region from the environment, and says what to set when none is.
func TestRedshiftPlanFromConfig(t *testing.T) {
	ctx := context.Background()
	p, err := RedshiftPlan(ctx, redshiftConfig("arn:aws:kinesis:eu-west-1:123456789012:stream/shop"), redshiftTables())
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.StreamName != "shop" || p.Config.StreamARN == "" || len(p.Tables) != 1 {
		t.Errorf("plan from a stream ARN: name %q, ARN %q, %d tables", p.Config.StreamName, p.Config.StreamARN, len(p.Tables))
	}
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if _, err := RedshiftPlan(ctx, redshiftConfig("shop"), redshiftTables()); err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Errorf("plan without a region = %v, want the ways to give one", err)
	}
	t.Setenv("AWS_REGION", "us-east-2")
	if p, err := RedshiftPlan(ctx, redshiftConfig("shop"), redshiftTables()); err != nil || p.Config.Region != "us-east-2" {
		t.Errorf("plan with AWS_REGION: %v", err)
	}
}

func TestRedshiftPgURL(t *testing.T) {
	u, host, err := redshiftPgURL("redshift://u:p@cluster.example/dev")
	if err != nil || u != "postgres://u:p@cluster.example:5439/dev" || host != "cluster.example:5439" {
		t.Errorf("redshiftPgURL = %q, %q, %v", u, host, err)
	}
	if _, _, err := redshiftPgURL("postgres://x/y"); err == nil {
		t.Error("a postgres:// URL was taken for Redshift")
	}
}

// countingConn answers every pending count with n, or fails.
type countingConn struct {
	n   string
	err error
}

func (c countingConn) Exec(context.Context, string) error     { return c.err }
func (c countingConn) ExecTx(context.Context, []string) error { return c.err }
func (c countingConn) Query(context.Context, string) ([][]*string, error) {
	if c.err != nil {
		return nil, c.err
	}
	return [][]*string{{&c.n}}, nil
}

// The merge schedule's record for status: runs counted, the last error
// shown until a run succeeds, pending records counted after a success.
func TestMergerStatus(t *testing.T) {
	p, err := RedshiftPlan(context.Background(), redshiftConfig("arn:aws:kinesis:eu-west-1:123456789012:stream/shop"), redshiftTables())
	if err != nil {
		t.Fatal(err)
	}
	conn := &switchConn{Conn: countingConn{err: errors.New("connection refused")}}
	m := &redshiftMerger{cfg: redshiftConfig("shop"), plan: p, conn: newLockedConn(conn), log: discardLog(),
		st: redshiftStatus{Every: "1m0s"}}
	ctx := context.Background()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m.ran(ctx, redshift.MergeRun{Start: start, Took: 1500 * time.Microsecond, Err: errors.New("connection refused")})
	st := m.status()
	if st.Merges != 0 || st.LastError != "connection refused" || st.LastMerge != "2026-01-02T03:04:05Z" || st.LastTook != "2ms" || len(st.Pending) != 0 {
		t.Errorf("after a failed run: %+v", st)
	}
	conn.Conn = countingConn{n: "7"}
	m.ran(ctx, redshift.MergeRun{Start: start.Add(time.Minute), Took: time.Second})
	st = m.status()
	if st.Merges != 1 || st.LastError != "" || st.Pending["public.customers"] != 7 || st.PendingAsOf == "" {
		t.Errorf("after a run that succeeded: %+v", st)
	}
}

// switchConn lets a test change the connection's answers.
type switchConn struct{ redshift.Conn }
