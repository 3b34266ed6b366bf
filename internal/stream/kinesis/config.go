package kinesis

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// Connection says which stream to use and how to reach Kinesis.
type Connection struct {
	// Stream is the stream's name or its ARN (arn:aws:kinesis:region:account:stream/name).
	Stream string
	// Region overrides the region of the standard chain (AWS_REGION, shared
	// config). When empty and Stream is an ARN, the ARN's region is used.
	Region string
	// Endpoint overrides the Kinesis endpoint, for Kinesis-compatible
	// servers (kinesalite, kinesis-local, LocalStack, a VPC endpoint).
	Endpoint string
	// AWS, when set, is used instead of loading the standard credential and
	// region chain (environment, shared config and credentials files, SSO,
	// web identity, ECS/EC2 roles).
	AWS *aws.Config
	// ClientOptions are applied to the SDK client after everything else:
	// extra middleware, an HTTP client, a retryer.
	ClientOptions []func(*kinesis.Options)
}

// streamRef identifies a stream in API calls: by ARN when given one (needed for
// cross-account access), else by name.
type streamRef struct {
	name string // always set: the name part of an ARN
	arn  string
}

func parseStream(s string) (streamRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return streamRef{}, fmt.Errorf("no Kinesis stream given: set the stream's name or ARN")
	}
	if !strings.HasPrefix(s, "arn:") {
		if len(s) > 128 || strings.ContainsAny(s, "/: ") {
			return streamRef{}, fmt.Errorf("the Kinesis stream name %q is not valid: want 1-128 characters of a-z A-Z 0-9 _ . -, or the stream's ARN", s)
		}
		return streamRef{name: s}, nil
	}
	// arn:partition:kinesis:region:account:stream/name
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[2] != "kinesis" || !strings.HasPrefix(parts[5], "stream/") || len(parts[5]) == len("stream/") {
		return streamRef{}, fmt.Errorf("the Kinesis stream ARN %q is not valid: want arn:aws:kinesis:REGION:ACCOUNT:stream/NAME", s)
	}
	return streamRef{name: strings.TrimPrefix(parts[5], "stream/"), arn: s}, nil
}

func (s streamRef) region() string {
	if s.arn == "" {
		return ""
	}
	return strings.SplitN(s.arn, ":", 6)[3]
}

func (s streamRef) String() string {
	if s.arn != "" {
		return s.arn
	}
	return s.name
}

// ids returns the StreamName and StreamARN fields for a request: exactly one is set.
func (s streamRef) ids() (name, arn *string) {
	if s.arn != "" {
		return nil, aws.String(s.arn)
	}
	return aws.String(s.name), nil
}

func (c Connection) client(ctx context.Context) (*kinesis.Client, streamRef, error) {
	st, err := parseStream(c.Stream)
	if err != nil {
		return nil, streamRef{}, err
	}
	var cfg aws.Config
	if c.AWS != nil {
		cfg = c.AWS.Copy()
	} else {
		var opts []func(*config.LoadOptions) error
		if r := c.Region; r != "" {
			opts = append(opts, config.WithRegion(r))
		} else if r := st.region(); r != "" {
			opts = append(opts, config.WithRegion(r))
		}
		if cfg, err = config.LoadDefaultConfig(ctx, opts...); err != nil {
			return nil, streamRef{}, fmt.Errorf("load AWS configuration (credentials and region) for Kinesis: %w", err)
		}
	}
	if c.Region != "" {
		cfg.Region = c.Region
	} else if cfg.Region == "" {
		cfg.Region = st.region()
	}
	if cfg.Region == "" {
		return nil, streamRef{}, fmt.Errorf("no AWS region for Kinesis stream %s: set AWS_REGION, the region in ~/.aws/config, or use the stream's ARN", st)
	}
	if c.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	return kinesis.NewFromConfig(cfg, c.ClientOptions...), st, nil
}
