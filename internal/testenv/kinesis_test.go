package testenv

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

func TestKinesaliteRoundTrip(t *testing.T) {
	k := NewKinesalite(t)
	roundTrip(t, k, false)
}

func TestKinesisLocalRoundTripByARN(t *testing.T) {
	k := NewKinesisLocal(t)
	roundTrip(t, k, true)
}

func roundTrip(t *testing.T, k *Kinesis, byARN bool) {
	ctx := context.Background()
	if !strings.HasPrefix(k.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %s is not on the loopback address", k.Endpoint)
	}
	if err := k.CreateStream(ctx, "s", 1); err != nil {
		t.Fatal(err)
	}
	c := k.Client()
	put := &kinesis.PutRecordInput{StreamName: aws.String("s"), Data: []byte("hello"), PartitionKey: aws.String("k")}
	shards := &kinesis.ListShardsInput{StreamName: aws.String("s")}
	if byARN {
		put = &kinesis.PutRecordInput{StreamARN: aws.String(k.StreamARN("s")), Data: []byte("hello"), PartitionKey: aws.String("k")}
		shards = &kinesis.ListShardsInput{StreamARN: aws.String(k.StreamARN("s"))}
	}
	if _, err := c.PutRecord(ctx, put); err != nil {
		t.Fatal(err)
	}
	ls, err := c.ListShards(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String("s"), ShardId: ls.Shards[0].ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Records) != 1 || string(out.Records[0].Data) != "hello" {
		t.Fatalf("got %d records, want the one put", len(out.Records))
	}
}

// The server must not be reachable on any address but loopback.
func TestKinesisListensOnLoopbackOnly(t *testing.T) {
	for _, k := range []*Kinesis{NewKinesalite(t), NewKinesisLocal(t)} {
		port := k.Endpoint[strings.LastIndex(k.Endpoint, ":")+1:]
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			ip, _, _ := net.ParseCIDR(a.String())
			if ip == nil || ip.IsLoopback() || ip.To4() == nil {
				continue
			}
			if c, err := net.Dial("tcp", net.JoinHostPort(ip.String(), port)); err == nil {
				c.Close()
				t.Errorf("%s answers on %s:%s; want 127.0.0.1 only", k.Kind, ip, port)
			}
		}
	}
}

func TestKinesisStopEndsTheProcess(t *testing.T) {
	k, err := StartKinesalite(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pid := k.cmd.Process.Pid
	k.Stop()
	select {
	case <-k.done:
	default:
		t.Fatalf("process %d still running after Stop", pid)
	}
}
