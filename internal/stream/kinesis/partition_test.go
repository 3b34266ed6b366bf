package kinesis

import "testing"

func TestParseStream(t *testing.T) {
	for in, want := range map[string]streamRef{
		"orders": {name: "orders"},
		"arn:aws:kinesis:eu-west-1:123456789012:stream/orders": {name: "orders", arn: "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"},
	} {
		got, err := parseStream(in)
		if err != nil || got != want {
			t.Errorf("parseStream(%q) = %+v, %v", in, got, err)
		}
	}
	if st, _ := parseStream("arn:aws:kinesis:eu-west-1:123456789012:stream/orders"); st.region() != "eu-west-1" {
		t.Errorf("region of the ARN = %q", st.region())
	}
	for _, bad := range []string{"", "arn:aws:s3:::bucket", "arn:aws:kinesis:eu-west-1:1:stream/", "a/b"} {
		if _, err := parseStream(bad); err == nil {
			t.Errorf("parseStream(%q) accepted", bad)
		}
	}
}
