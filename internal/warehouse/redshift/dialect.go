package redshift

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// Dialect is every difference between Redshift and the Postgres stand-in,
// in one place. The SQL generator (plan.go, merge.go) only ever asks a
// Dialect how to spell a thing, so the text pinned by the golden files
// (Redshift) and the text executed in tests (Postgres) come from the same
// code.
type Dialect interface {
	// Name is "redshift" or "postgres".
	Name() string
	// Type spells a column type.
	Type(t WType) string
	// Field is the semi-structured value at path inside the record column
	// (SUPER in Redshift, jsonb in Postgres).
	Field(rec string, path ...string) string
	// Value is the record field at path cast to t; kind is its record form.
	Value(rec string, path []string, kind change.Kind, t WType) string
	// Text is a string field of the record as text.
	Text(rec string, path ...string) string
	// ArrayLen is the length of the array at path.
	ArrayLen(rec string, path ...string) string
	// ElemText is attribute attr of element i of the array at path, as text.
	ElemText(rec string, path []string, i int, attr string) string
	// Contains tests whether the array at path holds the string s.
	Contains(rec string, path []string, s string) string
	// IsObject tests whether a semi-structured value is an object (false
	// for null).
	IsObject(expr string) string
	// SuperText is a SUPER (jsonb) value's JSON text, for comparing values
	// that cannot be compared themselves.
	SuperText(expr string) string
	// SeqAfter tests whether sequence number a is after b. Kinesis sequence
	// numbers are decimal strings of up to 128 digits, more than DECIMAL(38)
	// holds, so they compare by length, then byte-wise.
	SeqAfter(a, b string) string
	// SeqDesc is an ORDER BY list putting the highest sequence number first.
	SeqDesc(col string) string
	// Literal quotes a string literal.
	Literal(s string) string
	// Now is the current time.
	Now() string
	// Session lists statements each connection runs before sluice's SQL.
	Session() []string
	// TableOptions follows CREATE TABLE (...) for a mirrored table.
	TableOptions(cols []Column) string
	// Canonical is the checksum text of a mirrored column (see checksum.go),
	// or "" when this dialect cannot produce the source's form for it.
	Canonical(c Column, expr string) string
	// HexInt turns the first digits (<= 15) hex digits of a hex text into a BIGINT.
	HexInt(expr string, digits int) string
	// NullText is the text standing for NULL in a row's checksum text (\N).
	NullText() string
	// BytesText is a UTF-8 binary value (VARBYTE, bytea) as text: a Kafka
	// record's key.
	BytesText(expr string) string
	// landing is what holds the stream's records as rows.
	landing(p *Plan) []Object
}

// Redshift is the production dialect.
var Redshift Dialect = redshiftDialect{}

// Postgres is the stand-in used to execute the generated merge in tests: a
// landing TABLE with the streaming view's columns, the record as jsonb.
var Postgres Dialect = postgresDialect{}

type redshiftDialect struct{}

func (redshiftDialect) Name() string { return "redshift" }

func (redshiftDialect) Type(t WType) string { return t.String() }

// Field navigates SUPER with quoted attribute names (data."after"."userid").
// Quoted names are case-sensitive only with enable_case_sensitive_identifier,
// which Session turns on.
func (redshiftDialect) Field(rec string, path ...string) string {
	var b strings.Builder
	b.WriteString(rec)
	for _, p := range path {
		b.WriteByte('.')
		b.WriteString(change.QuoteIdent(p))
	}
	return b.String()
}

func (d redshiftDialect) Value(rec string, path []string, kind change.Kind, t WType) string {
	f := d.Field(rec, path...)
	if kind == change.KindInt && t.Base != "VARCHAR" {
		return f + "::" + t.String() // a JSON number: SUPER casts it directly
	}
	switch t.Base {
	case "SUPER":
		return f
	case "VARBYTE":
		return "TO_VARBYTE(" + f + "::VARCHAR, 'base64')"
	case "BOOLEAN", "SMALLINT", "INTEGER", "BIGINT":
		return f + "::" + t.String()
	case "REAL", "DOUBLE PRECISION":
		// NaN and the infinities arrive as strings, every other float as a number.
		return "CASE WHEN IS_VARCHAR(" + f + ") THEN " + f + "::VARCHAR::" + t.String() + " ELSE " + f + "::" + t.String() + " END"
	case "VARCHAR", "CHAR":
		return f + "::" + t.String()
	}
	// Numeric digits, dates and times travel as strings: through VARCHAR.
	return f + "::VARCHAR::" + t.String()
}

func (d redshiftDialect) Text(rec string, path ...string) string {
	return d.Field(rec, path...) + "::VARCHAR"
}

func (d redshiftDialect) ArrayLen(rec string, path ...string) string {
	return "GET_ARRAY_LENGTH(" + d.Field(rec, path...) + ")"
}

func (d redshiftDialect) ElemText(rec string, path []string, i int, attr string) string {
	return d.Field(rec, path...) + "[" + strconv.Itoa(i) + "]." + change.QuoteIdent(attr) + "::VARCHAR"
}

func (d redshiftDialect) Contains(rec string, path []string, s string) string {
	return "COALESCE(ARRAY_CONTAINS(" + d.Field(rec, path...) + ", " + d.Literal(s) + "), FALSE)"
}

// IsObject: https://docs.aws.amazon.com/redshift/latest/dg/r_is_object.html
func (redshiftDialect) IsObject(expr string) string { return "IS_OBJECT(" + expr + ")" }

// SuperText: https://docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html
// (it fails on a value whose text exceeds VARCHAR's 65,535 bytes).
func (redshiftDialect) SuperText(expr string) string { return "JSON_SERIALIZE(" + expr + ")" }

func (redshiftDialect) SeqAfter(a, b string) string {
	return fmt.Sprintf("(LEN(%s) > LEN(%s) OR (LEN(%s) = LEN(%s) AND %s > %s))", a, b, a, b, a, b)
}

func (redshiftDialect) SeqDesc(col string) string {
	return "LEN(" + col + ") DESC, " + col + " DESC"
}

func (redshiftDialect) Now() string { return "GETDATE()" }

// Literal doubles backslashes as well as quotes: Redshift reads a backslash
// in a string literal as an escape (it has no standard_conforming_strings).
func (redshiftDialect) Literal(s string) string {
	return change.QuoteLiteral(strings.ReplaceAll(s, `\`, `\\`))
}

// Session makes quoted names and SUPER attribute names case-sensitive
// (https://docs.aws.amazon.com/redshift/latest/dg/r_enable_case_sensitive_identifier.html)
// and pins the session's time zone to UTC, so TIMESTAMPTZ values read as
// text or converted in checksums do not depend on the user's default
// (https://docs.aws.amazon.com/redshift/latest/dg/r_timezone_config.html).
func (redshiftDialect) Session() []string {
	return []string{"SET enable_case_sensitive_identifier TO true", "SET timezone TO 'UTC'"}
}

// TableOptions distributes and sorts on the key so the merge's joins on the
// key stay node-local. DISTKEY takes one column; SUPER and VARBYTE can be
// neither distribution nor sort keys.
func (redshiftDialect) TableOptions(cols []Column) string {
	var keys []string
	for _, c := range cols {
		if c.Key && c.Type.Base != "SUPER" && c.Type.Base != "VARBYTE" {
			keys = append(keys, change.QuoteIdent(c.Name))
		}
	}
	if len(keys) == 0 {
		return "\nDISTSTYLE AUTO"
	}
	return "\nDISTKEY(" + keys[0] + ")\nSORTKEY(" + strings.Join(keys, ", ") + ")"
}

// BytesText: https://docs.aws.amazon.com/redshift/latest/dg/r_FROM_VARBYTE.html
func (redshiftDialect) BytesText(expr string) string { return "FROM_VARBYTE(" + expr + ", 'utf8')" }

func (redshiftDialect) landing(p *Plan) []Object {
	cfg := &p.Config
	if cfg.Kafka != nil {
		return []Object{kafkaExternalSchema(cfg), kafkaStreamingView(p)}
	}
	ext := cfg.ExternalSchema
	schema := Object{
		Kind: KindExternalSchema, Schema: ext,
		// REGION: the stream's, which need not be the cluster's; IAM_ROLE:
		// the role, or the chain of roles, comma-separated.
		// https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_EXTERNAL_SCHEMA.html
		Create: "CREATE EXTERNAL SCHEMA " + change.QuoteIdent(ext) + "\nFROM KINESIS\nREGION " + redshiftDialect{}.Literal(cfg.Region) +
			"\nIAM_ROLE " + redshiftDialect{}.Literal(strings.Join(cfg.roles(), ",")),
		Drop: "DROP SCHEMA " + change.QuoteIdent(ext),
	}
	// Every record is kept, parsed or not. A view that filtered with WHERE
	// CAN_JSON_PARSE(...) would skip records JSON_PARSE refuses ("records
	// that can't be parsed are skipped",
	// https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-getting-started.html),
	// and the merge's watermarks would move past them: rows lost without a
	// word. Kept with their bytes in "unparsed_data" (and no "data"), they
	// stop the merge of their table, naming them (merge.go).
	// https://docs.aws.amazon.com/redshift/latest/dg/CAN_JSON_PARSE.html
	view := Object{
		Kind: KindMaterializedView, Schema: cfg.StateSchema, Name: cfg.LandingName,
		Create: "CREATE MATERIALIZED VIEW " + p.Landing.Quoted() + "\nAUTO REFRESH YES\nAS\nSELECT\n" +
			"  \"approximate_arrival_timestamp\",\n" +
			"  \"partition_key\",\n" +
			"  \"shard_id\",\n" +
			"  \"sequence_number\",\n" +
			"  \"refresh_time\",\n" +
			"  CASE WHEN CAN_JSON_PARSE(\"kinesis_data\") THEN JSON_PARSE(\"kinesis_data\") END AS \"data\",\n" +
			"  CASE WHEN NOT CAN_JSON_PARSE(\"kinesis_data\") THEN \"kinesis_data\" END AS \"unparsed_data\"\n" +
			"FROM " + change.QuoteIdent(ext) + "." + change.QuoteIdent(cfg.StreamName),
		Drop: "DROP MATERIALIZED VIEW " + p.Landing.Quoted(),
	}
	return []Object{schema, view}
}

type postgresDialect struct{}

func (postgresDialect) Name() string { return "postgres" }

func (postgresDialect) Type(t WType) string {
	switch t.Base {
	case "SUPER":
		return "JSONB"
	case "VARBYTE":
		return "BYTEA"
	}
	return t.String()
}

// Field navigates jsonb with -> (the result stays jsonb).
func (postgresDialect) Field(rec string, path ...string) string {
	var b strings.Builder
	b.WriteString(rec)
	for _, p := range path {
		b.WriteString("->")
		b.WriteString(change.QuoteLiteral(p))
	}
	return b.String()
}

func (d postgresDialect) Value(rec string, path []string, kind change.Kind, t WType) string {
	switch t.Base {
	case "SUPER":
		// A JSON null is SQL NULL in the mirror, as SUPER null is in Redshift.
		return "NULLIF(" + d.Field(rec, path...) + ", 'null'::JSONB)"
	case "VARBYTE":
		return "DECODE(" + d.Text(rec, path...) + ", 'base64')"
	}
	return "(" + d.Text(rec, path...) + ")::" + d.Type(t)
}

// Text uses ->> on the last step.
func (d postgresDialect) Text(rec string, path ...string) string {
	if len(path) == 0 {
		return rec + "::TEXT"
	}
	return d.Field(rec, path[:len(path)-1]...) + "->>" + change.QuoteLiteral(path[len(path)-1])
}

func (d postgresDialect) ArrayLen(rec string, path ...string) string {
	return "jsonb_array_length(" + d.Field(rec, path...) + ")"
}

func (d postgresDialect) ElemText(rec string, path []string, i int, attr string) string {
	return d.Field(rec, path...) + "->" + strconv.Itoa(i) + "->>" + change.QuoteLiteral(attr)
}

func (d postgresDialect) Contains(rec string, path []string, s string) string {
	arr := "[" + string(appendJSONString(nil, s)) + "]"
	return "COALESCE(" + d.Field(rec, path...) + " @> " + change.QuoteLiteral(arr) + "::JSONB, FALSE)"
}

func (postgresDialect) IsObject(expr string) string {
	return "COALESCE(jsonb_typeof(" + expr + ") = 'object', FALSE)"
}

func (postgresDialect) SuperText(expr string) string { return "(" + expr + ")::TEXT" }

func (postgresDialect) SeqAfter(a, b string) string {
	return fmt.Sprintf("(CHAR_LENGTH(%s) > CHAR_LENGTH(%s) OR (CHAR_LENGTH(%s) = CHAR_LENGTH(%s) AND %s COLLATE \"C\" > %s COLLATE \"C\"))", a, b, a, b, a, b)
}

func (postgresDialect) SeqDesc(col string) string {
	return "CHAR_LENGTH(" + col + ") DESC, " + col + " COLLATE \"C\" DESC"
}

func (postgresDialect) Now() string { return "now()" }

func (postgresDialect) Literal(s string) string { return change.QuoteLiteral(s) }

func (postgresDialect) Session() []string { return []string{"SET TIME ZONE 'UTC'"} }

func (postgresDialect) TableOptions([]Column) string { return "" }

// landing is a plain table with the streaming view's columns; whatever
// stands in for Kinesis (a test, testenv.StreamingView) inserts records
// into it: "data" when Redshift's JSON_PARSE would take the record, else
// its bytes in "unparsed_data".
func (postgresDialect) BytesText(expr string) string { return "convert_from(" + expr + ", 'UTF8')" }

func (postgresDialect) landing(p *Plan) []Object {
	if p.Config.Kafka != nil {
		return []Object{kafkaLandingTable(p)}
	}
	return []Object{{
		Kind: KindTable, Schema: p.Landing.Schema, Name: p.Landing.Name,
		Create: "CREATE TABLE " + p.Landing.Quoted() + " (\n" +
			"  \"approximate_arrival_timestamp\" TIMESTAMP NOT NULL,\n" +
			"  \"partition_key\" VARCHAR(256) NOT NULL,\n" +
			"  \"shard_id\" VARCHAR(128) NOT NULL,\n" +
			"  \"sequence_number\" VARCHAR(128) NOT NULL,\n" +
			"  \"refresh_time\" TIMESTAMP NOT NULL,\n" +
			"  \"data\" JSONB,\n" +
			"  \"unparsed_data\" BYTEA\n)",
		Drop: "DROP TABLE " + p.Landing.Quoted(),
	}}
}

// appendJSONString writes s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r < 0x20:
			dst = append(dst, fmt.Sprintf("\\u%04x", r)...)
		default:
			dst = append(dst, string(r)...)
		}
	}
	return append(dst, '"')
}
