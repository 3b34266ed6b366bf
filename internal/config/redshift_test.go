package config

import (
	"strings"
	"testing"
	"time"
)

func TestRedshiftSection(t *testing.T) {
	c, err := Parse([]byte(`
source: {url: postgres://h/db}
tables: [public.customers]
target: redshift://sluice:${PW}@cluster.example:5439/dev
stream:
  kinesis: {stream: "arn:aws:kinesis:eu-west-1:123456789012:stream/shop"}
redshift:
  role_arn: arn:aws:iam::123456789012:role/sluice
`), env(map[string]string{"PW": "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsRedshift() || c.Redshift.MergeInterval != time.Minute || c.Redshift.ExternalSchema != "" {
		t.Errorf("redshift defaults: %+v", c.Redshift)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	c.Stream.Role = "merge"
	if err := c.Validate(); err != nil {
		t.Errorf("role merge: %v", err)
	}
}

func TestRedshiftValidate(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Source.URL = "postgres://h/db"
		c.Tables = []TableSpec{{Name: "public.customers"}}
		c.Target.URL = "redshift://u:p@h/dev"
		c.Stream = &Stream{Role: "both", Kinesis: &Kinesis{Stream: "shop", Region: "us-east-1"}}
		c.Redshift = &Redshift{RoleARN: "arn:aws:iam::123456789012:role/sluice", Account: "123456789012", MergeInterval: time.Minute}
		return c
	}
	cases := map[string]struct {
		edit func(*Config)
		want string
	}{
		"no section":              {func(c *Config) { c.Redshift = nil }, "redshift.role_arn is empty"},
		"stream as role":          {func(c *Config) { c.Redshift.RoleARN = "arn:aws:kinesis:us-east-1:123456789012:stream/shop" }, "is a Kinesis stream ARN"},
		"bad role":                {func(c *Config) { c.Redshift.RoleARN = "sluice-role" }, "want an IAM role ARN"},
		"no stream":               {func(c *Config) { c.Stream = nil }, "or a Kafka topic: stream.kafka with redshift.msk_cluster_arn"},
		"kafka keys with kinesis": {func(c *Config) { c.Redshift.KafkaURI = "b:9092" }, "are for a Redshift target fed from stream.kafka"},
		"no account":              {func(c *Config) { c.Redshift.Account = "" }, "redshift.account is empty"},
		"short account":           {func(c *Config) { c.Redshift.Account = "1234" }, "want the 12-digit AWS account ID"},
		"interval":                {func(c *Config) { c.Redshift.MergeInterval = 0 }, "merge_interval must be positive"},
		"dialect":                 {func(c *Config) { c.Redshift.Dialect = "mysql" }, `redshift.dialect "mysql"`},
		"no database":             {func(c *Config) { c.Target.URL = "redshift://h" }, "want redshift://user:password@host:5439/database"},
		"data api host":           {func(c *Config) { c.Redshift.DataAPI = &RedshiftDataAPI{WorkgroupName: "w", Database: "dev"} }, "use one way to reach Redshift"},
		"db user on serverless": {func(c *Config) {
			c.Target.URL = "redshift:"
			c.Redshift.DataAPI = &RedshiftDataAPI{WorkgroupName: "w", Database: "dev", DbUser: "admin"}
		}, "db_user is for provisioned clusters only: on Serverless workgroup w"},
		"secret and user": {func(c *Config) {
			c.Target.URL = "redshift:"
			c.Redshift.DataAPI = &RedshiftDataAPI{ClusterIdentifier: "c", Database: "dev", DbUser: "admin", SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:s"}
		}, "set one of secret_arn and db_user, not both"},
		"bad chained role": {func(c *Config) {
			c.Redshift.ChainRoleARNs = []string{"arn:aws:iam::123456789012:role/a", "role-b"}
		}, `redshift.chain_role_arns[1] "role-b"`},
		"no source":       {func(c *Config) { c.Source.URL = ""; c.Stream.Role = "merge" }, "a Redshift target needs the source even for the merge"},
		"merge elsewhere": {func(c *Config) { c.Target.URL = "duckdb:x"; c.Redshift = nil; c.Stream.Role = "merge" }, "stream.role merge runs the Redshift merge schedule"},
		"section unused":  {func(c *Config) { c.Target.URL = "duckdb:x" }, "redshift is set but the target is not Redshift"},
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := base()
			tc.edit(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// The Data API authenticates the caller's IAM identity when neither a
	// secret nor a database user is given, on a cluster as on Serverless:
	// https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ExecuteStatement.html
	for name, api := range map[string]*RedshiftDataAPI{
		"workgroup as IAM identity": {WorkgroupName: "w", Database: "dev"},
		"cluster as IAM identity":   {ClusterIdentifier: "c", Database: "dev"},
		"cluster with a db user":    {ClusterIdentifier: "c", Database: "dev", DbUser: "admin"},
		"workgroup with a secret":   {WorkgroupName: "w", Database: "dev", SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:s"},
	} {
		c := base()
		c.Target.URL = "redshift:"
		c.Redshift.DataAPI = api
		if err := c.Validate(); err != nil {
			t.Errorf("Data API, %s: %v", name, err)
		}
	}
}

// Chained roles and the parameter group's case-sensitive identifiers are
// options of the redshift section, read as the redshift package wants them.
func TestRedshiftChainAndCaseSensitive(t *testing.T) {
	c, err := Parse([]byte(`
source: {url: postgres://h/db}
tables: [public.customers]
target: redshift://sluice:pw@cluster.example:5439/dev
stream:
  kinesis: {stream: "arn:aws:kinesis:eu-west-1:210987654321:stream/Shop"}
redshift:
  role_arn: arn:aws:iam::123456789012:role/sluice
  chain_role_arns: [arn:aws:iam::210987654321:role/reads-shop]
  case_sensitive_parameter_group: true
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	r := c.Redshift
	if len(r.ChainRoleARNs) != 1 || r.ChainRoleARNs[0] != "arn:aws:iam::210987654321:role/reads-shop" || !r.CaseSensitiveParameterGroup {
		t.Errorf("redshift section: %+v", r)
	}
	// A comma-separated string is a list too, as IAM_ROLE writes the chain.
	c, err = Parse([]byte("redshift: {role_arn: \"arn:aws:iam::123456789012:role/a\", chain_role_arns: \"arn:aws:iam::123456789012:role/b, arn:aws:iam::123456789012:role/c\"}\n"), env(nil))
	if err != nil || len(c.Redshift.ChainRoleARNs) != 2 || c.Redshift.ChainRoleARNs[1] != "arn:aws:iam::123456789012:role/c" {
		t.Errorf("comma-separated chain: %+v, %v", c.Redshift, err)
	}
	if c.Redshift.CaseSensitiveParameterGroup {
		t.Errorf("case_sensitive_parameter_group defaults to true")
	}
}

func TestRedshiftFromKafkaValidate(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Source.URL = "postgres://h/db"
		c.Tables = []TableSpec{{Name: "public.customers"}}
		c.Target.URL = "redshift://u:p@h/dev"
		c.Stream = &Stream{Role: "both", Kafka: &Kafka{Brokers: []string{"b-1:9098"}, Topic: "shop.changes", MaxRecordBytes: 1 << 20}}
		c.Redshift = &Redshift{RoleARN: "arn:aws:iam::123456789012:role/sluice", MergeInterval: time.Minute,
			MSKClusterARN: "arn:aws:kafka:us-east-1:123456789012:cluster/shop/abc-1"}
		return c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("MSK with IAM: %v", err)
	}
	selfManaged := base()
	selfManaged.Redshift.MSKClusterARN, selfManaged.Redshift.KafkaURI, selfManaged.Redshift.RoleARN = "", "kafka-1:9092", ""
	if err := selfManaged.Validate(); err != nil {
		t.Fatalf("self-managed Kafka without a role: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"neither": {func(c *Config) { c.Redshift.MSKClusterARN = "" }, "set redshift.msk_cluster_arn"},
		"both":    {func(c *Config) { c.Redshift.KafkaURI = "b:9092" }, "are both set"},
		"no role": {func(c *Config) { c.Redshift.RoleARN = "" }, "redshift.role_arn is empty"},
		"iam, uri": {func(c *Config) {
			c.Redshift.MSKClusterARN, c.Redshift.KafkaURI, c.Redshift.KafkaAuthentication = "", "b:9092", "iam"
		}, "iam is for Amazon MSK only"},
		"mtls":     {func(c *Config) { c.Redshift.KafkaAuthentication = "mtls" }, "set exactly one of redshift.kafka_certificate_arn"},
		"bad auth": {func(c *Config) { c.Redshift.KafkaAuthentication = "sasl" }, `redshift.kafka_authentication "sasl"`},
		"kms":      {func(c *Config) { c.Redshift.KMSKeyARN = "arn:aws:kms:us-east-1:123456789012:key/k" }, "kms_key_arn is for a Kinesis stream"},
		"not arn":  {func(c *Config) { c.Redshift.MSKClusterARN = "shop" }, `redshift.msk_cluster_arn "shop"`},
	} {
		c := base()
		tc.edit(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
}
