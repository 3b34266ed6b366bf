package redshift

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Config is everything the Redshift plan is rendered from.
type Config struct {
	// StreamName is the Kinesis data stream the records arrive on.
	StreamName string
	// StreamARN is the stream's ARN. When empty it is built from Region,
	// AccountID and StreamName.
	StreamARN string
	Region    string
	AccountID string
	// RoleARN is the IAM role Redshift assumes to read the stream (the trust
	// and permission policies printed by the plan belong to it).
	RoleARN string
	// ChainRoleARNs are further roles, in order, that RoleARN assumes one
	// after the other (role chaining, e.g. to read a stream of another
	// account); the last one reads the stream. IAM_ROLE names them all,
	// comma-separated:
	// https://docs.aws.amazon.com/redshift/latest/mgmt/authorizing-redshift-service-chaining-roles.html
	ChainRoleARNs []string
	// CaseSensitiveParameterGroup says that the cluster's parameter group
	// (Serverless: the workgroup's parameters) sets
	// enable_case_sensitive_identifier to true. Sluice sets it in its own
	// sessions, but the streaming view refreshes itself in the background,
	// with the parameter group's value
	// (https://docs.aws.amazon.com/redshift/latest/dg/r_enable_case_sensitive_identifier.html):
	// without it, a stream, view or schema name with upper-case letters is
	// refused.
	CaseSensitiveParameterGroup bool
	// KMSKeyARN is the stream's customer-managed KMS key, if the stream is
	// encrypted with one; the permission policy then grants kms:Decrypt on it.
	KMSKeyARN string
	// ExternalSchema is the Redshift schema mapped to Kinesis. Default "sluice_kinesis".
	ExternalSchema string
	// StateSchema holds the landing view, the watermarks and the delete
	// markers. Default "_sluice", the schema of sluice's own tables in every
	// warehouse.
	StateSchema string
	// LandingName is the streaming materialized view (a table in the
	// Postgres dialect). Default: the stream's name.
	LandingName string
	// TargetSchema is where mirrored tables are created; default: each
	// source table's own schema.
	TargetSchema string
	// Tables are the source tables mirrored from this stream.
	Tables []*change.Table
	// Dialect is Redshift unless set (Postgres for the test stand-in).
	Dialect Dialect
	// Kafka, when set, says the records arrive on a Kafka topic (Amazon
	// MSK, Confluent Cloud or self-managed Kafka) instead of a Kinesis
	// stream; StreamName, StreamARN and KMSKeyARN are then unused (kafka.go).
	Kafka *KafkaSource
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid redshift configuration")

var (
	roleARNRe   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	streamARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[A-Za-z0-9_.-]{1,128}$`)
	streamRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	accountRe   = regexp.MustCompile(`^[0-9]{12}$`)
	regionRe    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	kmsARNRe    = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$`)
)

// maxIdent is Redshift's identifier length limit in bytes.
const maxIdent = 127

// normalize fills defaults and checks the config; errors name the field and the fix.
func (c Config) normalize() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	if c.Dialect == nil {
		c.Dialect = Redshift
	}
	if c.StateSchema == "" {
		c.StateSchema = warehouse.StateSchema
	}
	if c.Kafka != nil {
		if err := c.normalizeKafka(); err != nil {
			return Config{}, err
		}
		return c.normalizeCommon()
	}
	if c.ExternalSchema == "" {
		c.ExternalSchema = "sluice_kinesis"
	}
	if c.LandingName == "" {
		// One view per stream: pipelines reading other streams into the
		// same database must not share (or silently reuse) it.
		c.LandingName = c.StreamName
	}
	if !streamRe.MatchString(c.StreamName) {
		return bad("stream name %q: set the Kinesis stream's name (1-128 of A-Z a-z 0-9 _ . -)", c.StreamName)
	}
	if c.StreamARN == "" {
		if !regionRe.MatchString(c.Region) {
			return bad("region %q: set the stream's AWS region, e.g. us-east-1 (or set the stream ARN)", c.Region)
		}
		if !accountRe.MatchString(c.AccountID) {
			return bad("account %q: set the 12-digit AWS account ID that owns the stream (or set the stream ARN)", c.AccountID)
		}
		c.StreamARN = fmt.Sprintf("arn:%s:kinesis:%s:%s:stream/%s", partition(c.Region), c.Region, c.AccountID, c.StreamName)
	}
	if !streamARNRe.MatchString(c.StreamARN) {
		return bad("stream ARN %q: want arn:aws:kinesis:<region>:<account>:stream/<name>", c.StreamARN)
	}
	if !strings.HasSuffix(c.StreamARN, ":stream/"+c.StreamName) {
		return bad("stream ARN %q does not name stream %q: make them agree", c.StreamARN, c.StreamName)
	}
	parts := strings.Split(c.StreamARN, ":")
	if c.Region == "" {
		c.Region = parts[3]
	}
	if c.AccountID == "" {
		c.AccountID = parts[4]
	}
	if c.Region != parts[3] || c.AccountID != parts[4] {
		return bad("stream ARN %q disagrees with region %q / account %q: make them agree", c.StreamARN, c.Region, c.AccountID)
	}
	if !roleARNRe.MatchString(c.RoleARN) {
		return bad("IAM role ARN %q: set the ARN of the role Redshift assumes, arn:aws:iam::<account>:role/<name> (a stream ARN does not belong here)", c.RoleARN)
	}
	if c.KMSKeyARN != "" && !kmsARNRe.MatchString(c.KMSKeyARN) {
		return bad("KMS key ARN %q: want arn:aws:kms:<region>:<account>:key/<id>, or leave it empty for an unencrypted or AWS-managed-key stream", c.KMSKeyARN)
	}
	return c.normalizeCommon()
}

// normalizeCommon checks what Kinesis and Kafka configs share: the chain
// of roles, the names, the tables.
func (c Config) normalizeCommon() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	for _, r := range c.ChainRoleARNs {
		if !roleARNRe.MatchString(r) {
			return bad("chained IAM role ARN %q: want arn:aws:iam::<account>:role/<name>", r)
		}
	}
	for _, n := range []string{c.ExternalSchema, c.StateSchema, c.LandingName, c.TargetSchema} {
		if len(n) > maxIdent {
			return bad("name %q is longer than Redshift's %d-byte identifier limit: choose a shorter one", n, maxIdent)
		}
	}
	if c.Dialect.Name() == "redshift" && !c.CaseSensitiveParameterGroup {
		source := struct{ what, name string }{"stream name", c.StreamName}
		if c.Kafka != nil {
			source.what, source.name = "Kafka topic", c.Kafka.Topic
		}
		for _, n := range []struct{ what, name string }{
			source, {"streaming view name", c.LandingName},
			{"external schema", c.ExternalSchema}, {"state schema", c.StateSchema},
		} {
			if strings.ToLower(n.name) != n.name {
				return bad("%s %q has upper-case letters: the streaming view refreshes itself in the background with the parameter group's enable_case_sensitive_identifier, not sluice's session's, and would fold it to lower case; "+
					"set enable_case_sensitive_identifier to true in the cluster's parameter group (Serverless: the workgroup's parameters) and say so (case_sensitive_parameter_group), or use a lower-case name", n.what, n.name)
			}
		}
	}
	if len(c.Tables) == 0 {
		return bad("no tables: list at least one source table to mirror")
	}
	seen := map[change.TableID]bool{}
	for _, t := range c.Tables {
		if t == nil || t.Name == "" || t.Schema == "" {
			return bad("a table without schema or name: give every table schema.name")
		}
		if seen[t.ID()] {
			return bad("table %s is listed twice: list it once", t.ID())
		}
		seen[t.ID()] = true
		// A table without a key is mirrored as a multiset (multiset.go).
	}
	return c, nil
}

// partition is the ARN partition of a region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}
