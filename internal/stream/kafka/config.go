package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	saslaws "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Connection says which topic to use and how to reach the brokers.
type Connection struct {
	// Brokers are the bootstrap brokers, host:port.
	Brokers []string
	// Topic carries the change records. Sluice does not create it.
	Topic string
	// TLS, when set, encrypts connections (security.protocol SSL, or
	// SASL_SSL with SASL).
	TLS *TLS
	// SASL, when set, authenticates connections.
	SASL *SASL
	// ClientID is sent to the brokers (default "sluice").
	ClientID string
	// Options are applied to the franz-go client after everything else.
	Options []kgo.Opt
}

// TLS configures encrypted connections. The zero value verifies the brokers
// against the system's roots.
type TLS struct {
	// CAFile is a PEM bundle of the authorities that sign the brokers'
	// certificates, instead of the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key, for brokers
	// that authenticate clients by certificate (mTLS).
	CertFile, KeyFile string
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate: for tests only.
	InsecureSkipVerify bool
}

// SASL mechanisms.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
	MechanismMSKIAM      = "AWS_MSK_IAM"
)

// SASL configures authentication.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM.
	Mechanism string
	// Username and Password, for PLAIN and SCRAM.
	Username, Password string
	// AWS, for AWS_MSK_IAM, is used instead of loading the standard AWS
	// credential chain (environment, shared config, SSO, web identity,
	// ECS/EC2 roles); Region overrides the chain's region.
	AWS    *aws.Config
	Region string
}

var topicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Validate checks the connection without connecting; errors name the
// setting and the fix.
func (c Connection) Validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("no Kafka brokers given: set stream.kafka.brokers to the bootstrap brokers, e.g. [broker-1:9092, broker-2:9092]")
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fmt.Errorf("the Kafka broker %q is not host:port: write it like broker-1.example.com:9092", b)
		}
	}
	if !topicRE.MatchString(c.Topic) {
		if c.Topic == "" {
			return fmt.Errorf("no Kafka topic given: set stream.kafka.topic")
		}
		return fmt.Errorf("the Kafka topic name %q is not valid: want 1-249 characters of a-z A-Z 0-9 . _ -", c.Topic)
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("stream.kafka.tls: cert_file and key_file go together (the client certificate and its key): set both or neither")
	}
	if s := c.SASL; s != nil {
		switch strings.ToUpper(s.Mechanism) {
		case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
			if s.Username == "" || s.Password == "" {
				return fmt.Errorf("stream.kafka.sasl: mechanism %s needs username and password (use ${ENV} for the password)", s.Mechanism)
			}
		case MechanismMSKIAM:
		case "":
			return fmt.Errorf("stream.kafka.sasl.mechanism is empty: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM")
		default:
			return fmt.Errorf("stream.kafka.sasl.mechanism %q is not supported: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM", s.Mechanism)
		}
	}
	return nil
}

// options are the franz-go client options common to the sink and the reader.
func (c Connection) options(ctx context.Context) ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	id := c.ClientID
	if id == "" {
		id = "sluice"
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(id)}
	tc := c.TLS
	if tc == nil && c.SASL != nil && strings.ToUpper(c.SASL.Mechanism) == MechanismMSKIAM {
		// MSK offers IAM only on its TLS listener (port 9098): TLS is
		// implied, as in the MSK client libraries.
		tc = &TLS{}
	}
	if tc != nil {
		cfg, err := tc.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.SASL != nil {
		m, err := c.SASL.mechanism(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return append(opts, c.Options...), nil
}

func (t *TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read stream.kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("stream.kafka.tls.ca_file %s holds no PEM certificate: give the CA bundle that signs the brokers' certificates", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the Kafka client certificate (stream.kafka.tls.cert_file and key_file): %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s *SASL) mechanism(ctx context.Context) (sasl.Mechanism, error) {
	switch strings.ToUpper(s.Mechanism) {
	case MechanismPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case MechanismSCRAMSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case MechanismSCRAMSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	case MechanismMSKIAM:
		var cfg aws.Config
		if s.AWS != nil {
			cfg = s.AWS.Copy()
		} else {
			var opts []func(*awsconfig.LoadOptions) error
			if s.Region != "" {
				opts = append(opts, awsconfig.WithRegion(s.Region))
			}
			var err error
			if cfg, err = awsconfig.LoadDefaultConfig(ctx, opts...); err != nil {
				return nil, fmt.Errorf("load AWS credentials for MSK IAM authentication: %w", err)
			}
		}
		creds := cfg.Credentials
		if creds == nil {
			return nil, fmt.Errorf("no AWS credentials for MSK IAM authentication: set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run with a role")
		}
		// Asked at every connection: the SDK's cache refreshes expiring
		// role credentials, so long-lived connections keep authenticating.
		return saslaws.ManagedStreamingIAM(func(ctx context.Context) (saslaws.Auth, error) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			v, err := creds.Retrieve(ctx)
			if err != nil {
				return saslaws.Auth{}, fmt.Errorf("retrieve AWS credentials for MSK IAM: %w", err)
			}
			return saslaws.Auth{AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken, UserAgent: "sluice"}, nil
		}), nil
	}
	return nil, fmt.Errorf("stream.kafka.sasl.mechanism %q is not supported", s.Mechanism)
}
