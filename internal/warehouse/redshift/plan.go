package redshift

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/sluice-dev/sluice/internal/change"
)

// ObjectKind is the kind of a database object the plan creates.
type ObjectKind uint8

const (
	KindSchema ObjectKind = iota + 1
	KindExternalSchema
	KindMaterializedView
	KindTable
)

var objectKindNames = [...]string{
	KindSchema:           "schema",
	KindExternalSchema:   "external schema",
	KindMaterializedView: "materialized view",
	KindTable:            "table",
}

func (k ObjectKind) String() string {
	if int(k) < len(objectKindNames) && k > 0 {
		return objectKindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// State says whether an object already exists in the warehouse.
type State uint8

const (
	Unknown  State = iota // not inspected
	Missing               // will be created
	Exists                // already there, left alone
	Conflict              // a table of that name exists with other columns: Setup refuses
)

// Object is one database object of the plan, with the SQL that creates and
// drops it.
type Object struct {
	Kind   ObjectKind
	Schema string
	Name   string // empty for schemas
	Create string
	Drop   string
	State  State
	// Columns are a table's column names, in order; Problem says how an
	// existing table differs from them (State Conflict), or, for a mirror
	// of another schema of its source table (Mirror), that the merge
	// alters it.
	Columns []string
	Problem string
	Mirror  bool // a mirrored table (not sluice's bookkeeping)
}

// ID is the object's quoted name.
func (o Object) ID() string {
	if o.Name == "" {
		return change.QuoteIdent(o.Schema)
	}
	return change.TableID{Schema: o.Schema, Name: o.Name}.Quoted()
}

// TablePlan is what the plan holds for one mirrored table.
type TablePlan struct {
	Source *change.Table
	// Target is the mirrored table; Deleted keeps the keys of deleted rows
	// with the position of their delete, so a late, older change cannot bring
	// a row back. A keyless table (Source.Keyless) has no delete markers:
	// Deleted is then the zero TableID, and Applied keeps the positions and
	// ops of the changes merged, so that a record the producer put again
	// (after a crash, in a later merge run) is not counted twice.
	Target  change.TableID
	Deleted change.TableID
	Applied change.TableID
	Columns []Column
	// Merge is the incremental merge: statements run in one transaction.
	Merge []string
	// shapes are, for a run over records of several schemas (schema.go),
	// those schemas, newest first; missing names, per column, the shapes
	// (1-based) that lack it.
	shapes  []*change.Table
	missing map[string][]int
}

// Plan is everything that will exist for a config, rendered once.
type Plan struct {
	Config Config // normalized
	// TrustPolicy lets Redshift assume the role; PermissionPolicy lets the
	// role (the last of a chain) read the one stream. Both are IAM JSON
	// documents. Roles lists every role of the chain with its two policies.
	TrustPolicy      []byte
	PermissionPolicy []byte
	Roles            []RolePolicies
	Landing          change.TableID
	Watermarks       change.TableID
	Truncations      change.TableID
	// Skipped lists unparseable records someone decided to go on without:
	// the merge of a table stops at such a record until it is listed here.
	Skipped change.TableID
	Created change.TableID // what sluice created, so teardown removes only that
	Objects []Object       // in creation order
	Tables  []*TablePlan
	// Warnings are properties of the source the mirror cannot keep.
	Warnings []string

	aligned *alignedShapes // per mirror, the shape a merge last gave it
}

// alignedShapes is shared by copies of a Plan.
type alignedShapes struct {
	mu sync.Mutex
	m  map[change.TableID]*change.Table
}

// Reserved column names. Source columns may not start with this prefix.
const (
	reservedPrefix = "_sluice_"
	colCommitLSN   = "_sluice_commit_lsn"
	colLSN         = "_sluice_lsn"
	colOp          = "_sluice_op"
	lsnType        = "DECIMAL(20,0)" // an LSN is an unsigned 64-bit number: 20 digits
)

// NewPlan renders everything that will exist for cfg. It touches no database.
func NewPlan(cfg Config) (*Plan, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	d := c.Dialect
	p := &Plan{
		Config:      c,
		Landing:     change.TableID{Schema: c.StateSchema, Name: c.LandingName},
		Watermarks:  change.TableID{Schema: c.StateSchema, Name: "watermarks"},
		Truncations: change.TableID{Schema: c.StateSchema, Name: "truncations"},
		Skipped:     change.TableID{Schema: c.StateSchema, Name: "skipped"},
		Created:     change.TableID{Schema: c.StateSchema, Name: "created"},
		aligned:     &alignedShapes{m: map[change.TableID]*change.Table{}},
	}
	if p.Roles, err = rolePolicies(&c); err != nil {
		return nil, err
	}
	if len(p.Roles) > 0 {
		p.TrustPolicy, p.PermissionPolicy = p.Roles[0].Trust, p.Roles[len(p.Roles)-1].Permission
	}
	p.Objects = append(p.Objects,
		Object{Kind: KindSchema, Schema: c.StateSchema,
			Create: "CREATE SCHEMA " + change.QuoteIdent(c.StateSchema),
			Drop:   "DROP SCHEMA " + change.QuoteIdent(c.StateSchema)},
		tableObject(p.Created, "CREATE TABLE "+p.Created.Quoted()+" (\n"+
			"  \"kind\" VARCHAR(32) NOT NULL,\n"+
			"  \"schema_name\" VARCHAR(128) NOT NULL,\n"+
			"  \"object_name\" VARCHAR(128) NOT NULL,\n"+
			"  \"created_at\" TIMESTAMP NOT NULL\n)"),
	)
	p.Objects = append(p.Objects, d.landing(p)...)
	pos := p.pos()
	p.Objects = append(p.Objects,
		tableObject(p.Watermarks, "CREATE TABLE "+p.Watermarks.Quoted()+" (\n"+
			"  \"table_name\" VARCHAR(512) NOT NULL,\n"+
			"  "+q(pos.lane)+" "+pos.laneDDL+" NOT NULL,\n"+
			"  "+q(pos.seq)+" "+pos.seqDDL+" NOT NULL,\n"+
			"  \"merged_at\" TIMESTAMP NOT NULL,\n"+
			"  PRIMARY KEY (\"table_name\", "+q(pos.lane)+")\n)"),
		tableObject(p.Truncations, "CREATE TABLE "+p.Truncations.Quoted()+" (\n"+
			"  \"table_name\" VARCHAR(512) NOT NULL,\n"+
			"  \"commit_lsn\" "+lsnType+" NOT NULL,\n"+
			"  \"lsn\" "+lsnType+" NOT NULL,\n"+
			"  \"merged_at\" TIMESTAMP NOT NULL\n)"),
		tableObject(p.Skipped, "CREATE TABLE "+p.Skipped.Quoted()+" (\n"+
			"  \"table_name\" VARCHAR(512) NOT NULL,\n"+
			"  "+q(pos.lane)+" "+pos.laneDDL+" NOT NULL,\n"+
			"  "+q(pos.seq)+" "+pos.seqDDL+" NOT NULL,\n"+
			"  \"skipped_at\" TIMESTAMP NOT NULL\n)"),
	)
	targets := map[change.TableID]change.TableID{}
	for _, src := range c.Tables {
		tp, warn, err := planTable(p, src)
		if err != nil {
			return nil, err
		}
		if prev, dup := targets[tp.Target]; dup {
			return nil, fmt.Errorf("%w: tables %s and %s both map to %s: set distinct target schemas", ErrConfig, prev, src.ID(), tp.Target)
		}
		targets[tp.Target] = src.ID()
		p.Warnings = append(p.Warnings, warn...)
		p.Tables = append(p.Tables, tp)
		mirror := tableObject(tp.Target, tableDDL(d, tp.Target, tp.Columns, src.Keyless()))
		mirror.Mirror = true
		p.Objects = append(p.Objects, mirror)
		if src.Keyless() {
			p.Objects = append(p.Objects, tableObject(tp.Applied, "CREATE TABLE "+tp.Applied.Quoted()+" (\n"+
				"  "+q(colCommitLSN)+" "+lsnType+" NOT NULL,\n"+
				"  "+q(colLSN)+" "+lsnType+" NOT NULL,\n"+
				"  "+q(colOp)+" CHAR(1) NOT NULL\n)"))
		} else {
			p.Objects = append(p.Objects, tableObject(tp.Deleted, tableDDL(d, tp.Deleted, keyColumns(tp.Columns), false)))
		}
	}
	// Target schemas other than the state schema.
	seen := map[string]bool{c.StateSchema: true}
	var schemas []Object
	for _, tp := range p.Tables {
		if s := tp.Target.Schema; !seen[s] {
			seen[s] = true
			schemas = append(schemas, Object{Kind: KindSchema, Schema: s,
				Create: "CREATE SCHEMA " + change.QuoteIdent(s),
				Drop:   "DROP SCHEMA " + change.QuoteIdent(s)})
		}
	}
	p.Objects = append(schemas, p.Objects...)
	for _, tp := range p.Tables {
		tp.Merge = mergeSQL(p, tp)
	}
	return p, nil
}

func tableObject(id change.TableID, create string) Object {
	return Object{Kind: KindTable, Schema: id.Schema, Name: id.Name, Create: create, Drop: "DROP TABLE " + id.Quoted(), Columns: ddlColumns(create)}
}

// ddlColumns reads the column names back from a CREATE TABLE this package
// rendered (one quoted column per line), so the names have one source.
func ddlColumns(create string) []string {
	var out []string
	for _, line := range strings.Split(create, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `"`) {
			continue
		}
		name, i := "", 1
		for i < len(line) {
			if line[i] == '"' {
				if i+1 < len(line) && line[i+1] == '"' {
					name += `"`
					i += 2
					continue
				}
				break
			}
			name += string(line[i])
			i++
		}
		out = append(out, name)
	}
	return out
}

func planTable(p *Plan, src *change.Table) (*TablePlan, []string, error) {
	schema := p.Config.TargetSchema
	if schema == "" {
		schema = src.Schema
	}
	tp := &TablePlan{Source: src, Target: change.TableID{Schema: schema, Name: src.Name}}
	state := tp.Deleted
	if src.Keyless() {
		tp.Applied = change.TableID{Schema: p.Config.StateSchema, Name: schema + "." + src.Name + ".applied"}
		state = tp.Applied
	} else {
		tp.Deleted = change.TableID{Schema: p.Config.StateSchema, Name: schema + "." + src.Name + ".deleted"}
	}
	if len(state.Name) > maxIdent {
		return nil, nil, fmt.Errorf("%w: table %s: the name of its bookkeeping table %q is longer than Redshift's %d bytes: shorten the table name or the target schema", ErrConfig, src.ID(), state.Name, maxIdent)
	}
	var warns []string
	for _, col := range src.Columns {
		if strings.HasPrefix(col.Name, reservedPrefix) {
			return nil, nil, fmt.Errorf("%w: table %s column %q: names starting with %q are reserved for sluice's bookkeeping: rename the column or project it under another name in a pipeline", ErrConfig, src.ID(), col.Name, reservedPrefix)
		}
		wt, warn, err := MapType(col)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: table %s: %v", ErrConfig, src.ID(), err)
		}
		if warn != "" {
			warns = append(warns, fmt.Sprintf("table %s: %s", src.ID(), warn))
		}
		if col.Key && wt.Base == "VARCHAR" && !isBpchar(col.Type) {
			warns = append(warns, fmt.Sprintf("table %s: key column %q is text, and Redshift compares text ignoring trailing blanks: a key value ending in a blank is refused by the producer (dead-letter file, or the pipeline stops), since it would be one row with the key without them", src.ID(), col.Name))
		}
		if col.Key && (wt.Base == "SUPER") {
			return nil, nil, fmt.Errorf("%w: table %s key column %q is %s, which Redshift cannot compare (SUPER): use a scalar key", ErrConfig, src.ID(), col.Name, col.Type.Name)
		}
		tp.Columns = append(tp.Columns, Column{
			Name: col.Name, Source: col.Type, Kind: col.Type.Kind, Type: wt, Key: col.Key,
			NotNull: col.Key || !col.Nullable, Toastable: !col.Key && toastable(col.Type.Kind),
		})
	}
	if n := mergeWidth(tp.Columns, src.Keyless()); n > maxColumns {
		return nil, nil, fmt.Errorf("%w: table %s: its merge needs a temporary table of %d columns (%d columns, %d of them TOAST-able, each carrying its value, an \"unchanged\" flag and where its latest value is), over Redshift's %d columns per table: mirror fewer columns (project them in a pipeline) or split the table into several pipelines' views",
			ErrConfig, src.ID(), n, len(tp.Columns), toastCount(tp.Columns), maxColumns)
	}
	return tp, warns, nil
}

// maxColumns is Redshift's limit of columns per table, temporary tables
// included: https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_TABLE_usage.html
const maxColumns = 1600

// mergeWidth is the number of columns of the widest table the merge makes
// (_sluice_changes: the row columns of _sluice_rows plus its window
// columns; see mergeSQL and multisetMergeSQL), or of the mirror itself.
func mergeWidth(cols []Column, keyless bool) int {
	if keyless {
		return len(cols) + 8 // positions, count; id, group, net, first, added
	}
	keys, toast := len(keyColumns(cols)), toastCount(cols)
	rows := 4 + keys + len(cols) + toast // positions, deleted, moved; from-keys; values; unchanged flags
	changes := rows + 2 + toast          // seq, last; one source column per TOAST-able column
	if toast > 0 {
		changes++ // reset
	}
	return max(changes, len(cols)+2)
}

// identityColumns are the columns that tell rows apart: the key's, or
// every column of a keyless table.
func identityColumns(cols []Column) []Column {
	if k := keyColumns(cols); len(k) > 0 {
		return k
	}
	return cols
}

func keyColumns(cols []Column) []Column {
	var out []Column
	for _, c := range cols {
		if c.Key {
			out = append(out, c)
		}
	}
	return out
}

// tableDDL renders CREATE TABLE for a mirrored table (or its delete markers:
// the key columns only), with the position of the last change applied. A
// keyless table is a multiset: no key, and no NOT NULL on its columns.
func tableDDL(d Dialect, id change.TableID, cols []Column, keyless bool) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE " + id.Quoted() + " (\n")
	var keys []string
	for _, c := range cols {
		b.WriteString("  " + change.QuoteIdent(c.Name) + " " + d.Type(c.Type))
		if c.NotNull && !keyless {
			b.WriteString(" NOT NULL")
		}
		b.WriteString(",\n")
		if c.Key {
			keys = append(keys, change.QuoteIdent(c.Name))
		}
	}
	b.WriteString("  " + change.QuoteIdent(colCommitLSN) + " " + lsnType + " NOT NULL,\n")
	if keyless {
		b.WriteString("  " + change.QuoteIdent(colLSN) + " " + lsnType + " NOT NULL\n)")
		b.WriteString(d.TableOptions(cols))
		return b.String()
	}
	b.WriteString("  " + change.QuoteIdent(colLSN) + " " + lsnType + " NOT NULL,\n")
	b.WriteString("  PRIMARY KEY (" + strings.Join(keys, ", ") + ")\n)")
	b.WriteString(d.TableOptions(cols))
	return b.String()
}

// policy documents, in IAM's field order.
type policyDoc struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid       string            `json:"Sid"`
	Effect    string            `json:"Effect"`
	Principal map[string]string `json:"Principal,omitempty"`
	Action    []string          `json:"Action"`
	Resource  []string          `json:"Resource,omitempty"`
}

// RolePolicies are the two policies of one role of the chain.
type RolePolicies struct {
	Role       string
	Trust      []byte // who may assume it
	Permission []byte // what it may do
}

// rolePolicies: Redshift assumes the first role; each role may assume the
// next, which trusts it; the last one reads the stream.
func rolePolicies(c *Config) ([]RolePolicies, error) {
	if c.RoleARN == "" {
		return nil, nil // a Kafka reached without AWS (normalizeKafka)
	}
	roles := c.roles()
	out := make([]RolePolicies, len(roles))
	for i, r := range roles {
		out[i].Role = r
		principal := map[string]string{"Service": "redshift.amazonaws.com"}
		sid := "RedshiftAssumesRole"
		if i > 0 {
			principal, sid = map[string]string{"AWS": roles[i-1]}, "PreviousRoleOfTheChainAssumesRole"
		}
		var err error
		if out[i].Trust, err = json.MarshalIndent(policyDoc{Version: "2012-10-17", Statement: []policyStatement{{
			Sid: sid, Effect: "Allow", Principal: principal, Action: []string{"sts:AssumeRole"},
		}}}, "", "  "); err != nil {
			return nil, err
		}
		if i < len(roles)-1 {
			out[i].Permission, err = json.MarshalIndent(policyDoc{Version: "2012-10-17", Statement: []policyStatement{{
				Sid: "AssumeNextRoleOfTheChain", Effect: "Allow", Action: []string{"sts:AssumeRole"}, Resource: []string{roles[i+1]},
			}}}, "", "  ")
		} else {
			out[i].Permission, err = permissionPolicy(c)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// roles is the chain of roles, first assumed by Redshift, last reading the stream.
func (c *Config) roles() []string { return append([]string{c.RoleARN}, c.ChainRoleARNs...) }

// permissionPolicy grants reading the ONE stream and nothing else:
//   - DescribeStreamSummary: Redshift checks the stream (status, shard count) when the view is created and refreshed;
//   - DescribeStream, ListShards: it enumerates the shards, also after resharding (both are authorised on the stream ARN);
//   - GetShardIterator, GetRecords: it reads each shard from the last sequence number it refreshed;
//   - ListStreams has no resource-level permission ("*" is the only resource IAM accepts); Redshift uses it
//     to list the streams visible through the external schema. It reveals stream names, not data.
//   - kms:Decrypt on the stream's key only when the stream uses a customer-managed key.
func permissionPolicy(c *Config) ([]byte, error) {
	if c.Kafka != nil {
		return kafkaPermissionPolicy(c)
	}
	doc := policyDoc{Version: "2012-10-17", Statement: []policyStatement{
		{
			Sid:    "ReadOneStream",
			Effect: "Allow",
			Action: []string{
				"kinesis:DescribeStreamSummary",
				"kinesis:DescribeStream",
				"kinesis:ListShards",
				"kinesis:GetShardIterator",
				"kinesis:GetRecords",
			},
			Resource: []string{c.StreamARN},
		},
		{
			Sid:      "ListStreamNames",
			Effect:   "Allow",
			Action:   []string{"kinesis:ListStreams"},
			Resource: []string{"*"},
		},
	}}
	if c.KMSKeyARN != "" {
		doc.Statement = append(doc.Statement, policyStatement{
			Sid: "DecryptStream", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: []string{c.KMSKeyARN},
		})
	}
	return json.MarshalIndent(doc, "", "  ")
}

// Table returns the plan of the table mirroring src, or nil.
func (p *Plan) Table(src change.TableID) *TablePlan {
	for _, tp := range p.Tables {
		if tp.Source.ID() == src {
			return tp
		}
	}
	return nil
}

// Inspector reports which objects already exist.
type Inspector interface {
	Exists(ctx context.Context, o Object) (bool, error)
}

// ColumnLister is an Inspector that can also list an existing table's
// columns, so the plan can tell a table sluice can use from one that merely
// has the same name.
type ColumnLister interface {
	Columns(ctx context.Context, o Object) ([]string, error)
}

// Inspect marks each object as existing, missing, or (a table whose columns
// are not the plan's, when in is a ColumnLister) in conflict.
func (p *Plan) Inspect(ctx context.Context, in Inspector) error {
	cl, _ := in.(ColumnLister)
	for i := range p.Objects {
		o := &p.Objects[i]
		ok, err := in.Exists(ctx, *o)
		if err != nil {
			return fmt.Errorf("inspect %s %s: %w", o.Kind, o.ID(), err)
		}
		o.State, o.Problem = Missing, ""
		if !ok {
			continue
		}
		o.State = Exists
		if cl == nil || o.Kind != KindTable || len(o.Columns) == 0 {
			continue
		}
		have, err := cl.Columns(ctx, *o)
		if err != nil {
			return fmt.Errorf("inspect the columns of %s: %w", o.ID(), err)
		}
		if strings.Join(have, "\x00") == strings.Join(o.Columns, "\x00") {
			continue
		}
		if o.Mirror && mirrorOfAnotherSchema(have, p.tableOf(*o)) {
			// Sluice's mirror, altered to (or still of) another schema of
			// the source table: the merge alters it to the schema of the
			// records (schema.go).
			o.Problem = fmt.Sprintf("it has columns (%s) of another schema of the source table (now %s): the merge alters it when it merges records of the new schema",
				strings.Join(have, ", "), strings.Join(o.Columns, ", "))
			continue
		}
		o.State = Conflict
		o.Problem = fmt.Sprintf("it has columns (%s), sluice needs (%s): rename or drop it, or choose another target schema",
			strings.Join(have, ", "), strings.Join(o.Columns, ", "))
	}
	return nil
}

// tableOf is the table plan of a mirror object.
func (p *Plan) tableOf(o Object) *TablePlan {
	for _, tp := range p.Tables {
		if tp.Target.Schema == o.Schema && tp.Target.Name == o.Name {
			return tp
		}
	}
	return nil
}

// mirrorOfAnotherSchema reports whether a table with columns have is
// sluice's mirror of tp's source table under another schema: it has the
// positions and the key columns.
func mirrorOfAnotherSchema(have []string, tp *TablePlan) bool {
	if tp == nil {
		return false
	}
	set := map[string]bool{}
	for _, n := range have {
		set[n] = true
	}
	if !set[colCommitLSN] || !set[colLSN] {
		return false
	}
	for _, n := range tp.Source.KeyNames() {
		if !set[n] {
			return false
		}
	}
	return true
}

// String renders the plan the way terraform does: + to create, = already
// there, ? not inspected; then the policies and the SQL that will run.
func (p *Plan) String() string {
	var b strings.Builder
	c := &p.Config
	switch k := c.Kafka; {
	case k == nil:
		fmt.Fprintf(&b, "Mirror into %s from Kinesis stream %s\n", c.Dialect.Name(), c.StreamARN)
	case k.ClusterARN != "":
		fmt.Fprintf(&b, "Mirror into %s from Kafka topic %s of Amazon MSK cluster %s (authentication %s)\n", c.Dialect.Name(), k.Topic, k.ClusterARN, k.Authentication)
	default:
		fmt.Fprintf(&b, "Mirror into %s from Kafka topic %s at %s (authentication %s)\n", c.Dialect.Name(), k.Topic, k.URI, k.Authentication)
	}
	if c.RoleARN == "" {
		b.WriteString("  No IAM role: Redshift reaches the brokers without AWS.\n")
	} else {
		fmt.Fprintf(&b, "  IAM role Redshift assumes: %s\n", c.RoleARN)
	}
	for _, r := range c.ChainRoleARNs {
		fmt.Fprintf(&b, "  which assumes: %s\n", r)
	}
	if c.CaseSensitiveParameterGroup {
		b.WriteString("  Requires enable_case_sensitive_identifier = true in the cluster's parameter group (Serverless: the workgroup's\n" +
			"  parameters): the streaming view refreshes itself in the background, outside sluice's sessions.\n")
	}
	b.WriteString("\n")
	create, exist, conflict := 0, 0, 0
	for _, o := range p.Objects {
		mark := "?"
		switch o.State {
		case Missing:
			mark = "+"
			create++
		case Exists:
			mark = "="
			exist++
		case Conflict:
			mark = "!"
			conflict++
		}
		fmt.Fprintf(&b, "  %s %s %s\n", mark, o.Kind, o.ID())
		if o.Problem != "" {
			fmt.Fprintf(&b, "      exists, but %s\n", o.Problem)
		}
	}
	switch {
	case create+exist+conflict == 0:
		fmt.Fprintf(&b, "\nPlan: %d objects (not inspected: connect to see what exists).\n", len(p.Objects))
	case conflict > 0:
		fmt.Fprintf(&b, "\nPlan: %d to create, %d already exist, %d in the way (setup refuses until they are resolved).\n", create, exist, conflict)
	default:
		fmt.Fprintf(&b, "\nPlan: %d to create, %d already exist.\n", create, exist)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	for _, r := range p.Roles {
		fmt.Fprintf(&b, "\n-- IAM trust policy of %s\n%s\n", r.Role, r.Trust)
		if r.Permission == nil {
			fmt.Fprintf(&b, "\n-- IAM permission policy of %s: none needed (it only needs to be assumable)\n", r.Role)
			continue
		}
		fmt.Fprintf(&b, "\n-- IAM permission policy of %s\n%s\n", r.Role, r.Permission)
	}
	for _, o := range p.Objects {
		if o.State == Exists || o.State == Conflict {
			continue
		}
		fmt.Fprintf(&b, "\n%s;\n", o.Create)
	}
	return b.String()
}
