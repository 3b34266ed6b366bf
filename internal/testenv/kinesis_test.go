package testenv

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
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

// Every socket the servers listen on is bound to 127.0.0.1 (read from the
// kernel's socket table; no traffic is sent to any other address).
func TestKinesisListensOnLoopbackOnly(t *testing.T) {
	for _, k := range []*Kinesis{NewKinesalite(t), NewKinesisLocal(t)} {
		socks := listeningSockets(t, k.cmd.Process.Pid)
		if len(socks) == 0 {
			t.Fatalf("%s: no listening socket found", k.Kind)
		}
		for _, addr := range socks {
			if !strings.HasPrefix(addr, "127.0.0.1:") {
				t.Errorf("%s listens on %s; want 127.0.0.1 only", k.Kind, addr)
			}
		}
	}
}

// listeningSockets returns the local addresses of the TCP sockets in
// LISTEN state that process pid holds.
func listeningSockets(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			hostHex, portHex, _ := strings.Cut(f[1], ":")
			port, _ := strconv.ParseUint(portHex, 16, 16)
			host := hostHex
			if len(hostHex) == 8 { // IPv4, little-endian
				b, _ := hex.DecodeString(hostHex)
				host = net.IPv4(b[3], b[2], b[1], b[0]).String()
			}
			out = append(out, fmt.Sprintf("%s:%d", host, port))
		}
	}
	return out
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
