package redshift

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata/types"
)

// DataAPIClient is the part of *redshiftdata.Client that DataAPI uses.
type DataAPIClient interface {
	ExecuteStatement(ctx context.Context, in *redshiftdata.ExecuteStatementInput, opts ...func(*redshiftdata.Options)) (*redshiftdata.ExecuteStatementOutput, error)
	BatchExecuteStatement(ctx context.Context, in *redshiftdata.BatchExecuteStatementInput, opts ...func(*redshiftdata.Options)) (*redshiftdata.BatchExecuteStatementOutput, error)
	DescribeStatement(ctx context.Context, in *redshiftdata.DescribeStatementInput, opts ...func(*redshiftdata.Options)) (*redshiftdata.DescribeStatementOutput, error)
	GetStatementResult(ctx context.Context, in *redshiftdata.GetStatementResultInput, opts ...func(*redshiftdata.Options)) (*redshiftdata.GetStatementResultOutput, error)
}

var _ DataAPIClient = (*redshiftdata.Client)(nil)

// DataAPITarget says which Redshift the Data API talks to and as whom.
type DataAPITarget struct {
	// ClusterIdentifier (provisioned) or WorkgroupName (serverless).
	ClusterIdentifier string
	WorkgroupName     string
	Database          string
	// How to authenticate, one of (ExecuteStatement's "authorization
	// methods", https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ExecuteStatement.html):
	//   - SecretARN: a Secrets Manager secret with user name and password;
	//   - DbUser: temporary credentials for that database user (provisioned
	//     clusters only);
	//   - neither: temporary credentials for the caller's IAM identity
	//     (database user IAM:<name> on a cluster; on Serverless the user is
	//     always derived from the IAM identity).
	SecretARN string
	DbUser    string
}

// MaxDataAPIStatement is the Data API's limit on one statement's text: "The
// maximum query statement size is 100 KB"
// (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html). KB is
// taken as 1,000 bytes, the smaller reading.
const MaxDataAPIStatement = 100_000

// ErrStatementTooLarge is wrapped when a statement exceeds MaxDataAPIStatement.
var ErrStatementTooLarge = errors.New("statement over the Data API's 100 KB limit")

// CheckDataAPI reports the first merge statement of the plan that the Data
// API would refuse for its size, naming the table and the way out.
func (p *Plan) CheckDataAPI() error {
	for _, tp := range p.Tables {
		for i, s := range tp.Merge {
			if len(s) > MaxDataAPIStatement {
				return fmt.Errorf("%w: statement %d of the merge of %s is %d bytes (%d columns, %d of them TOAST-able): reach Redshift over the wire protocol (target: redshift://user:password@host:5439/database) instead of redshift.data_api, or mirror fewer columns of the table (project them in a pipeline)",
					ErrStatementTooLarge, i+1, tp.Source.ID(), len(s), len(tp.Columns), toastCount(tp.Columns))
			}
		}
	}
	return nil
}

func toastCount(cols []Column) int {
	n := 0
	for _, c := range cols {
		if c.Toastable {
			n++
		}
	}
	return n
}

// DataAPI is a Conn over the Redshift Data API: no network path to the
// cluster is needed, only IAM. Statements run in one Data API session
// (kept alive between calls) so the dialect's session settings hold for
// all of them; ExecTx is BatchExecuteStatement, which runs its statements
// as one transaction. Safe for use by one goroutine at a time.
type DataAPI struct {
	client  DataAPIClient
	target  DataAPITarget
	setup   []string
	mu      sync.Mutex
	session string
	// Poll is the first wait between status checks; it doubles up to 2 s.
	Poll time.Duration
	// KeepAlive is how long the session outlives each statement.
	KeepAlive time.Duration
}

// NewDataAPI returns a Conn over client; d's session statements open the session.
func NewDataAPI(client DataAPIClient, target DataAPITarget, d Dialect) (*DataAPI, error) {
	if (target.ClusterIdentifier == "") == (target.WorkgroupName == "") {
		return nil, fmt.Errorf("%w: Data API: set exactly one of cluster identifier (provisioned) and workgroup name (serverless)", ErrConfig)
	}
	if target.Database == "" {
		return nil, fmt.Errorf("%w: Data API: set the database name", ErrConfig)
	}
	if target.SecretARN != "" && target.DbUser != "" {
		return nil, fmt.Errorf("%w: Data API: set a secret ARN or a database user, not both (or neither, to connect as your IAM identity)", ErrConfig)
	}
	if target.DbUser != "" && target.WorkgroupName != "" {
		return nil, fmt.Errorf("%w: Data API: a database user (db_user) is for provisioned clusters only; on Serverless workgroup %s leave it empty (the user is derived from your IAM identity) or set a secret ARN", ErrConfig, target.WorkgroupName)
	}
	return &DataAPI{client: client, target: target, setup: d.Session(), Poll: 100 * time.Millisecond, KeepAlive: 10 * time.Minute}, nil
}

var _ Conn = (*DataAPI)(nil)

// ErrStatementFailed is wrapped when the Data API reports a statement FAILED or ABORTED.
var ErrStatementFailed = errors.New("statement failed")

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// start submits sqls (one statement, or a batch run as one transaction) in
// the session, opening it with the setup statements first.
func (a *DataAPI) start(ctx context.Context, sqls []string) (string, error) {
	if a.session == "" {
		first := append(append([]string{}, a.setup...), "SELECT 1")
		id, sess, err := a.submit(ctx, first, true)
		if err != nil {
			return "", fmt.Errorf("open Data API session: %w", err)
		}
		if _, err := a.wait(ctx, id); err != nil {
			return "", fmt.Errorf("open Data API session: %w", err)
		}
		a.session = sess
	}
	id, _, err := a.submit(ctx, sqls, false)
	return id, err
}

func (a *DataAPI) submit(ctx context.Context, sqls []string, open bool) (id, session string, err error) {
	keep := aws.Int32(int32(a.KeepAlive / time.Second))
	var sess *string
	t := a.target
	if !open {
		sess = aws.String(a.session)
		t = DataAPITarget{} // a session already names cluster, database and user
	}
	if len(sqls) == 1 {
		out, err := a.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{
			Sql: aws.String(sqls[0]), ClusterIdentifier: str(t.ClusterIdentifier), WorkgroupName: str(t.WorkgroupName),
			Database: str(t.Database), SecretArn: str(t.SecretARN), DbUser: str(t.DbUser),
			SessionId: sess, SessionKeepAliveSeconds: keep,
		})
		if err != nil {
			return "", "", fmt.Errorf("execute statement: %w", err)
		}
		return aws.ToString(out.Id), aws.ToString(out.SessionId), nil
	}
	out, err := a.client.BatchExecuteStatement(ctx, &redshiftdata.BatchExecuteStatementInput{
		Sqls: sqls, ClusterIdentifier: str(t.ClusterIdentifier), WorkgroupName: str(t.WorkgroupName),
		Database: str(t.Database), SecretArn: str(t.SecretARN), DbUser: str(t.DbUser),
		SessionId: sess, SessionKeepAliveSeconds: keep,
	})
	if err != nil {
		return "", "", fmt.Errorf("batch execute statement: %w", err)
	}
	return aws.ToString(out.Id), aws.ToString(out.SessionId), nil
}

// wait polls until the statement ends; it reports whether it has a result set.
func (a *DataAPI) wait(ctx context.Context, id string) (bool, error) {
	delay := a.Poll
	for {
		out, err := a.client.DescribeStatement(ctx, &redshiftdata.DescribeStatementInput{Id: aws.String(id)})
		if err != nil {
			return false, fmt.Errorf("describe statement %s: %w", id, err)
		}
		switch out.Status {
		case types.StatusStringFinished:
			return aws.ToBool(out.HasResultSet), nil
		case types.StatusStringFailed, types.StatusStringAborted:
			return false, fmt.Errorf("%w (%s): %s", ErrStatementFailed, out.Status, aws.ToString(out.Error))
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(delay):
		}
		if delay *= 2; delay > 2*time.Second {
			delay = 2 * time.Second
		}
	}
}

func (a *DataAPI) run(ctx context.Context, sqls []string) (string, bool, error) {
	for i, s := range sqls {
		if len(s) > MaxDataAPIStatement {
			return "", false, fmt.Errorf("%w: statement %d is %d bytes: reach Redshift over the wire protocol instead", ErrStatementTooLarge, i+1, len(s))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	id, err := a.start(ctx, sqls)
	if err != nil && a.session != "" {
		// The session may have expired between calls: open a new one once.
		a.session = ""
		id, err = a.start(ctx, sqls)
	}
	if err != nil {
		return "", false, err
	}
	rs, err := a.wait(ctx, id)
	return id, rs, err
}

// Exec runs one statement.
func (a *DataAPI) Exec(ctx context.Context, sql string) error {
	if _, _, err := a.run(ctx, []string{sql}); err != nil {
		return &StatementError{SQL: sql, Err: err}
	}
	return nil
}

// ExecTx runs stmts as one BatchExecuteStatement: one transaction.
func (a *DataAPI) ExecTx(ctx context.Context, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	if len(stmts) == 1 { // ExecuteStatement runs in its own transaction too
		return a.Exec(ctx, stmts[0])
	}
	if _, _, err := a.run(ctx, stmts); err != nil {
		return fmt.Errorf("run %d statements in one transaction: %w", len(stmts), err)
	}
	return nil
}

// Query runs one statement and reads all of its result pages.
func (a *DataAPI) Query(ctx context.Context, sql string) ([][]*string, error) {
	id, rs, err := a.run(ctx, []string{sql})
	if err != nil {
		return nil, &StatementError{SQL: sql, Err: err}
	}
	if !rs {
		return nil, nil
	}
	var out [][]*string
	var token *string
	for {
		res, err := a.client.GetStatementResult(ctx, &redshiftdata.GetStatementResultInput{Id: aws.String(id), NextToken: token})
		if err != nil {
			return nil, fmt.Errorf("get result of statement %s: %w", id, err)
		}
		for _, rec := range res.Records {
			row := make([]*string, len(rec))
			for i, f := range rec {
				row[i] = fieldText(f)
			}
			out = append(out, row)
		}
		if token = res.NextToken; aws.ToString(token) == "" {
			return out, nil
		}
	}
}

// fieldText is a result field as text, nil for NULL.
func fieldText(f types.Field) *string {
	var s string
	switch v := f.(type) {
	case *types.FieldMemberIsNull:
		return nil
	case *types.FieldMemberStringValue:
		s = v.Value
	case *types.FieldMemberLongValue:
		s = strconv.FormatInt(v.Value, 10)
	case *types.FieldMemberDoubleValue:
		s = strconv.FormatFloat(v.Value, 'g', -1, 64)
	case *types.FieldMemberBooleanValue:
		s = strconv.FormatBool(v.Value)
	case *types.FieldMemberBlobValue:
		s = string(v.Value)
	default:
		return nil
	}
	return &s
}
