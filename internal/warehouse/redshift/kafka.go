package redshift

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// Redshift reading a Kafka topic instead of a Kinesis stream: the external
// schema FROM MSK (Amazon MSK, by cluster ARN) or FROM KAFKA (Confluent
// Cloud or self-managed Apache Kafka, by bootstrap URI), the streaming view
// over the topic's columns, the IAM policy, and where a record is (its
// partition and offset, for the watermarks and the skipped list).
//
// The syntax and the view's columns are those of
// https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-getting-started-MSK.html
// and https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_EXTERNAL_SCHEMA.html;
// mTLS: https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-streaming-ingestion-mtls.html.
//
// Everything after the landing view is the Kinesis path's: the view holds
// the same change records (the Kafka sink and the Kinesis sink share the
// stream core, record for record, key for key), so the merge differs only
// in the columns that say where a record is. A Kafka offset is a number
// that grows within its partition, so "after the watermark" is a plain
// numeric comparison per partition, where a Kinesis sequence number is a
// string of up to 128 digits compared by length, then byte-wise.

// KafkaSource is the Kafka topic Redshift reads.
type KafkaSource struct {
	// Topic carries the change records; the external schema maps it as a
	// table of that name.
	Topic string
	// ClusterARN names an Amazon MSK cluster (FROM MSK ... CLUSTER_ARN);
	// URI the bootstrap brokers of any other Kafka (FROM KAFKA ... URI),
	// host:port. Exactly one is set.
	ClusterARN string
	URI        string
	// Authentication is how Redshift authenticates to the brokers: iam
	// (MSK only), mtls, or none. Default: iam for MSK, none otherwise.
	Authentication string
	// CertificateARN (an ACM certificate) or SecretARN (a Secrets Manager
	// secret holding the certificate and key) is the client certificate of
	// mtls, exactly one of them.
	CertificateARN string
	SecretARN      string
}

const (
	AuthIAM  = "iam"
	AuthMTLS = "mtls"
	AuthNone = "none"
)

var (
	// arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>
	// https://docs.aws.amazon.com/msk/latest/developerguide/kafka-actions.html
	mskClusterARNRe = regexp.MustCompile(`^arn:(aws[a-z-]*):kafka:([a-z0-9-]+):([0-9]{12}):cluster/([A-Za-z0-9-]{1,64})/([A-Za-z0-9-]+)$`)
	kafkaTopicRe    = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	hostPortRe      = regexp.MustCompile(`^[A-Za-z0-9.-]+:[0-9]{1,5}$`)
	acmARNRe        = regexp.MustCompile(`^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$`)
	secretARNRe     = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$`)
)

// normalizeKafka fills the Kafka defaults and checks them; errors name the
// config key (as cmd/sluice's config spells it) and the fix.
func (c *Config) normalizeKafka() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	k := *c.Kafka
	c.Kafka = &k
	if c.ExternalSchema == "" {
		c.ExternalSchema = "sluice_kafka"
	}
	if !kafkaTopicRe.MatchString(k.Topic) {
		return bad("Kafka topic %q: set the topic that carries the change records (1-249 of a-z A-Z 0-9 . _ -)", k.Topic)
	}
	if len(k.Topic) > maxIdent {
		return bad("Kafka topic %q is longer than Redshift's %d-byte identifier limit, and the external schema maps the topic as a table of its name: use a topic with a shorter name", k.Topic, maxIdent)
	}
	if c.LandingName == "" {
		c.LandingName = k.Topic // one view per topic, as per stream
	}
	if c.StreamName != "" || c.StreamARN != "" {
		return bad("both a Kinesis stream (%s) and a Kafka topic (%s): Redshift reads one of them; set one", c.StreamName+c.StreamARN, k.Topic)
	}
	if c.KMSKeyARN != "" {
		return bad("kms_key_arn is for a Kinesis stream encrypted with a customer-managed key; MSK decrypts its own storage: remove it")
	}
	switch {
	case (k.ClusterARN == "") == (k.URI == ""):
		return bad("Kafka topic %s: set exactly one of redshift.msk_cluster_arn (Amazon MSK: arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>) and redshift.kafka_uri (Confluent Cloud or self-managed Kafka: the bootstrap broker, host:port)", k.Topic)
	case k.ClusterARN != "":
		m := mskClusterARNRe.FindStringSubmatch(k.ClusterARN)
		if m == nil {
			return bad("redshift.msk_cluster_arn %q: want the MSK cluster's ARN, arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid> (the console's cluster summary, or aws kafka list-clusters)", k.ClusterARN)
		}
		if c.Region == "" {
			c.Region = m[2]
		}
		if c.AccountID == "" {
			c.AccountID = m[3]
		}
		if c.Region != m[2] || c.AccountID != m[3] {
			return bad("redshift.msk_cluster_arn %q disagrees with region %q / account %q: make them agree, or leave region and account out", k.ClusterARN, c.Region, c.AccountID)
		}
		if k.Authentication == "" {
			k.Authentication = AuthIAM
		}
	default:
		for _, hp := range strings.Split(k.URI, ",") {
			if !hostPortRe.MatchString(strings.TrimSpace(hp)) {
				return bad("redshift.kafka_uri %q: want the bootstrap broker as host:port, e.g. lkc-abc123.us-east-1.aws.confluent.cloud:9092", k.URI)
			}
		}
		if k.Authentication == "" {
			k.Authentication = AuthNone
		}
	}
	k.Authentication = strings.ToLower(k.Authentication)
	switch k.Authentication {
	case AuthIAM:
		if k.ClusterARN == "" {
			return bad("redshift.kafka_authentication iam is for Amazon MSK only (set redshift.msk_cluster_arn); Confluent Cloud and self-managed Kafka take mtls or none")
		}
	case AuthMTLS:
		if (k.CertificateARN == "") == (k.SecretARN == "") {
			return bad("redshift.kafka_authentication mtls needs the client certificate: set exactly one of redshift.kafka_certificate_arn (an ACM certificate) and redshift.kafka_secret_arn (a Secrets Manager secret)")
		}
		if k.CertificateARN != "" && !acmARNRe.MatchString(k.CertificateARN) {
			return bad("redshift.kafka_certificate_arn %q: want arn:aws:acm:<region>:<account>:certificate/<id>", k.CertificateARN)
		}
		if k.SecretARN != "" && !secretARNRe.MatchString(k.SecretARN) {
			return bad("redshift.kafka_secret_arn %q: want arn:aws:secretsmanager:<region>:<account>:secret:<name>", k.SecretARN)
		}
	case AuthNone:
	default:
		return bad("redshift.kafka_authentication %q: want iam (MSK only), mtls or none", k.Authentication)
	}
	if k.Authentication != AuthMTLS && (k.CertificateARN != "" || k.SecretARN != "") {
		return bad("redshift.kafka_certificate_arn and kafka_secret_arn are for kafka_authentication mtls; authentication is %s: remove them or set mtls", k.Authentication)
	}
	switch {
	case c.RoleARN != "" && !roleARNRe.MatchString(c.RoleARN):
		return bad("IAM role ARN %q: set the ARN of the role Redshift assumes, arn:aws:iam::<account>:role/<name>", c.RoleARN)
	case c.RoleARN == "" && k.needsRole():
		return bad("redshift.role_arn is empty: Redshift needs an IAM role to %s; set the ARN of the role, arn:aws:iam::<account>:role/<name> (`sluice plan` prints its policies)", k.roleDoes())
	case c.RoleARN == "" && len(c.ChainRoleARNs) > 0:
		return bad("redshift.chain_role_arns without redshift.role_arn: set the first role of the chain in role_arn")
	}
	return nil
}

// needsRole: MSK is reached through AWS (kafka:GetBootstrapBrokers turns
// the cluster ARN into brokers, and IAM authenticates), and mtls reads the
// certificate from ACM or Secrets Manager. Only an unauthenticated
// self-managed Kafka needs nothing of AWS.
func (k *KafkaSource) needsRole() bool { return k.ClusterARN != "" || k.Authentication == AuthMTLS }

func (k *KafkaSource) roleDoes() string {
	switch {
	case k.Authentication == AuthIAM:
		return "authenticate to the MSK cluster (IAM) and find its brokers"
	case k.Authentication == AuthMTLS:
		return "read the client certificate of mTLS"
	}
	return "find the MSK cluster's brokers"
}

// mskARNs are the cluster's topic and group ARNs: IAM for Kafka APIs
// authorizes a topic as topic/<cluster name>/<cluster uuid>/<topic>, and
// a group as group/<cluster name>/<cluster uuid>/<group>.
// https://docs.aws.amazon.com/msk/latest/developerguide/kafka-actions.html
func (k *KafkaSource) mskARNs() (topic, groups string) {
	m := mskClusterARNRe.FindStringSubmatch(k.ClusterARN)
	base := fmt.Sprintf("arn:%s:kafka:%s:%s:", m[1], m[2], m[3])
	return base + "topic/" + m[4] + "/" + m[5] + "/" + k.Topic, base + "group/" + m[4] + "/" + m[5] + "/*"
}

// kafkaPermissionPolicy grants the role what Redshift's streaming ingestion
// does with the ONE topic, and no more:
//   - kafka:GetBootstrapBrokers on the cluster: Redshift turns CLUSTER_ARN into the brokers to connect to;
//   - kafka-cluster:Connect on the cluster (IAM authentication: every connection);
//   - kafka-cluster:DescribeTopic and ReadData on the one topic: metadata (its partitions), then fetching;
//   - kafka-cluster:DescribeGroup and AlterGroup on the cluster's groups: the policy the Redshift guide gives
//     grants them; Redshift keeps its own position in the view, but the group name its consumer uses is not
//     documented, so they cannot be scoped to one group. A group holds offsets, not data.
//   - with mtls, acm:ExportCertificate on the certificate or secretsmanager:GetSecretValue on the secret: the
//     client certificate and its key.
//
// With neither MSK nor mtls the role, if any, needs nothing: nil.
func kafkaPermissionPolicy(c *Config) ([]byte, error) {
	k := c.Kafka
	var st []policyStatement
	if k.ClusterARN != "" {
		st = append(st, policyStatement{Sid: "FindTheBrokers", Effect: "Allow",
			Action: []string{"kafka:GetBootstrapBrokers"}, Resource: []string{k.ClusterARN}})
	}
	if k.Authentication == AuthIAM {
		topic, groups := k.mskARNs()
		st = append(st,
			policyStatement{Sid: "ConnectToTheCluster", Effect: "Allow",
				Action: []string{"kafka-cluster:Connect"}, Resource: []string{k.ClusterARN}},
			policyStatement{Sid: "ReadOneTopic", Effect: "Allow",
				Action: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}, Resource: []string{topic}},
			policyStatement{Sid: "ConsumerGroups", Effect: "Allow",
				Action: []string{"kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"}, Resource: []string{groups}},
		)
	}
	switch {
	case k.CertificateARN != "":
		st = append(st, policyStatement{Sid: "ClientCertificate", Effect: "Allow",
			Action: []string{"acm:ExportCertificate"}, Resource: []string{k.CertificateARN}})
	case k.SecretARN != "":
		st = append(st, policyStatement{Sid: "ClientCertificate", Effect: "Allow",
			Action: []string{"secretsmanager:GetSecretValue"}, Resource: []string{k.SecretARN}})
	}
	if len(st) == 0 {
		return nil, nil
	}
	return json.MarshalIndent(policyDoc{Version: "2012-10-17", Statement: st}, "", "  ")
}

// kafkaExternalSchema is CREATE EXTERNAL SCHEMA for the topic's cluster,
// its clauses in the documented order (IAM_ROLE, AUTHENTICATION, the
// certificate, then CLUSTER_ARN or URI).
func kafkaExternalSchema(c *Config) Object {
	k, lit := c.Kafka, redshiftDialect{}.Literal
	ext := change.QuoteIdent(c.ExternalSchema)
	var b strings.Builder
	b.WriteString("CREATE EXTERNAL SCHEMA " + ext)
	if k.ClusterARN != "" {
		b.WriteString("\nFROM MSK")
	} else {
		b.WriteString("\nFROM KAFKA")
	}
	if c.RoleARN != "" {
		b.WriteString("\nIAM_ROLE " + lit(strings.Join(c.roles(), ",")))
	}
	b.WriteString("\nAUTHENTICATION " + k.Authentication)
	switch {
	case k.CertificateARN != "":
		b.WriteString("\nAUTHENTICATION_ARN " + lit(k.CertificateARN))
	case k.SecretARN != "":
		b.WriteString("\nSECRET_ARN " + lit(k.SecretARN))
	}
	if k.ClusterARN != "" {
		b.WriteString("\nCLUSTER_ARN " + lit(k.ClusterARN))
	} else {
		b.WriteString("\nURI " + lit(k.URI))
	}
	return Object{Kind: KindExternalSchema, Schema: c.ExternalSchema, Create: b.String(), Drop: "DROP SCHEMA " + ext}
}

// kafkaStreamingView keeps every record, parsed or not, as the Kinesis
// view does (dialect.go): kafka_value is VARBYTE, JSON_PARSE takes it
// directly. kafka_key (VARBYTE) is the partition key the producer set,
// kept so that an unparsed record can be told apart by its table.
func kafkaStreamingView(p *Plan) Object {
	cfg := &p.Config
	return Object{
		Kind: KindMaterializedView, Schema: cfg.StateSchema, Name: cfg.LandingName,
		Create: "CREATE MATERIALIZED VIEW " + p.Landing.Quoted() + "\nAUTO REFRESH YES\nAS\nSELECT\n" +
			"  \"kafka_partition\",\n" +
			"  \"kafka_offset\",\n" +
			"  \"kafka_timestamp_type\",\n" +
			"  \"kafka_timestamp\",\n" +
			"  \"kafka_key\",\n" +
			"  \"kafka_headers\",\n" +
			"  \"refresh_time\",\n" +
			"  CASE WHEN CAN_JSON_PARSE(\"kafka_value\") THEN JSON_PARSE(\"kafka_value\") END AS \"data\",\n" +
			"  CASE WHEN NOT CAN_JSON_PARSE(\"kafka_value\") THEN \"kafka_value\" END AS \"unparsed_data\"\n" +
			"FROM " + change.QuoteIdent(cfg.ExternalSchema) + "." + change.QuoteIdent(cfg.Kafka.Topic),
		Drop: "DROP MATERIALIZED VIEW " + p.Landing.Quoted(),
	}
}

// kafkaLandingTable is the Postgres stand-in's landing table with the
// streaming view's columns (testenv.KafkaStreamingView fills it).
func kafkaLandingTable(p *Plan) Object {
	return Object{
		Kind: KindTable, Schema: p.Landing.Schema, Name: p.Landing.Name,
		Create: "CREATE TABLE " + p.Landing.Quoted() + " (\n" +
			"  \"kafka_partition\" BIGINT NOT NULL,\n" +
			"  \"kafka_offset\" BIGINT NOT NULL,\n" +
			"  \"kafka_timestamp_type\" CHAR(1) NOT NULL,\n" +
			"  \"kafka_timestamp\" TIMESTAMP NOT NULL,\n" +
			"  \"kafka_key\" BYTEA,\n" +
			"  \"kafka_headers\" JSONB,\n" +
			"  \"refresh_time\" TIMESTAMP NOT NULL,\n" +
			"  \"data\" JSONB,\n" +
			"  \"unparsed_data\" BYTEA\n)",
		Drop: "DROP TABLE " + p.Landing.Quoted(),
	}
}

// landingPos is what the merge reads of where a landed record is: the
// streaming view's lane and position columns (Kinesis shard and sequence
// number, or Kafka partition and offset), the record's partition key as
// text, and how positions compare. The watermarks and the skipped list
// keep the same two columns under the view's names.
type landingPos struct {
	lane, seq       string // the view's columns
	laneDDL, seqDDL string // their types in sluice's tables
	tmpLane, tmpSeq string // the merge's copies in _sluice_records
	kafka           bool
}

func (p *Plan) pos() landingPos {
	if p.Config.Kafka != nil {
		return landingPos{lane: "kafka_partition", seq: "kafka_offset", laneDDL: "BIGINT", seqDDL: "BIGINT",
			tmpLane: "_sluice_partition", tmpSeq: "_sluice_offset", kafka: true}
	}
	return landingPos{lane: "shard_id", seq: "sequence_number", laneDDL: "VARCHAR(128)", seqDDL: "VARCHAR(128)",
		tmpLane: "_sluice_shard_id", tmpSeq: "_sluice_sequence_number"}
}

// after tests whether position a is after b in one lane.
func (lp landingPos) after(d Dialect, a, b string) string {
	if lp.kafka {
		return "(" + a + " > " + b + ")"
	}
	return d.SeqAfter(a, b)
}

// desc is an ORDER BY list putting the latest position first.
func (lp landingPos) desc(d Dialect, col string) string {
	if lp.kafka {
		return col + " DESC"
	}
	return d.SeqDesc(col)
}

// key is the landed record's partition key as text (alias v).
func (lp landingPos) key(d Dialect) string {
	if lp.kafka {
		return d.BytesText(`v."kafka_key"`)
	}
	return `v."partition_key"`
}

// where names a landed record in messages.
func (lp landingPos) where(lane, seq, key string) string {
	if lp.kafka {
		return fmt.Sprintf("partition %s offset %s (key %s)", lane, seq, key)
	}
	return fmt.Sprintf("shard %s sequence number %s (partition key %s)", lane, seq, key)
}
