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
	if !c.IsRedshift() || c.Redshift.MergeInterval != time.Minute || c.Redshift.ExternalSchema != "sluice_kinesis" {
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
		"no section":     {func(c *Config) { c.Redshift = nil }, "redshift.role_arn is empty"},
		"stream as role": {func(c *Config) { c.Redshift.RoleARN = "arn:aws:kinesis:us-east-1:123456789012:stream/shop" }, "is a Kinesis stream ARN"},
		"bad role":       {func(c *Config) { c.Redshift.RoleARN = "sluice-role" }, "want an IAM role ARN"},
		"no stream":      {func(c *Config) { c.Stream = nil }, "a Redshift target needs a Kinesis stream"},
		"no account":     {func(c *Config) { c.Redshift.Account = "" }, "redshift.account is empty"},
		"short account":  {func(c *Config) { c.Redshift.Account = "1234" }, "want the 12-digit AWS account ID"},
		"interval":       {func(c *Config) { c.Redshift.MergeInterval = 0 }, "merge_interval must be positive"},
		"dialect":        {func(c *Config) { c.Redshift.Dialect = "mysql" }, `redshift.dialect "mysql"`},
		"no database":    {func(c *Config) { c.Target.URL = "redshift://h" }, "want redshift://user:password@host:5439/database"},
		"data api host":  {func(c *Config) { c.Redshift.DataAPI = &RedshiftDataAPI{WorkgroupName: "w", Database: "dev"} }, "use one way to reach Redshift"},
		"data api user": {func(c *Config) {
			c.Target.URL = "redshift:"
			c.Redshift.DataAPI = &RedshiftDataAPI{ClusterIdentifier: "c", Database: "dev"}
		}, "set secret_arn or db_user for cluster c"},
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
	c := base()
	c.Target.URL = "redshift:"
	c.Redshift.DataAPI = &RedshiftDataAPI{WorkgroupName: "w", Database: "dev"}
	if err := c.Validate(); err != nil {
		t.Errorf("Data API with a workgroup: %v", err)
	}
}
