package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeKV is a KVService holding one map, for driving the CLI without a cluster.
type fakeKV struct {
	conclavev1grpc.UnimplementedKVServiceServer
	mu      sync.Mutex
	data    map[string]string
	lastSet *conclavev1.SetRequest
}

func (f *fakeKV) Get(_ context.Context, r *conclavev1.GetRequest) (*conclavev1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[string(r.GetKey())]
	if !ok {
		return &conclavev1.GetResponse{}, nil
	}
	return &conclavev1.GetResponse{Found: true, Kv: &conclavev1.KeyValue{Key: r.GetKey(), Value: []byte(v), ModRevision: 7}}, nil
}

func (f *fakeKV) Set(_ context.Context, r *conclavev1.SetRequest) (*conclavev1.SetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSet = proto.CloneOf(r)
	if _, ok := f.data[string(r.GetKey())]; ok && r.GetIfAbsent() {
		st, _ := status.New(codes.FailedPrecondition, `kv: key "`+string(r.GetKey())+`" exists`).
			WithDetails(&errdetails.ErrorInfo{Domain: "conclave.dev", Reason: "CONDITION_FAILED"})
		return nil, st.Err()
	}
	f.data[string(r.GetKey())] = string(r.GetValue())
	return &conclavev1.SetResponse{Kv: &conclavev1.KeyValue{Key: r.GetKey(), Value: r.GetValue()}}, nil
}

// startFakeKV serves a fakeKV on a loopback port and returns it with its address.
func startFakeKV(t *testing.T) (*fakeKV, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKV{data: map[string]string{"greeting": "hello"}}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterKVServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCLI_KV(t *testing.T) {
	_, addr := startFakeKV(t)
	ep := "--endpoints=" + addr
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string // exact stdout, unless empty
		wantErrOut string // substring of stderr
	}{
		{"get found", []string{"kv", "get", "greeting", ep}, 0, "hello\n", ""},
		{"get missing", []string{"kv", "get", "nope", ep}, 1, "", "Error: key not found"},
		{"set", []string{"kv", "set", "k", "v", "--ttl", "1500ms", "--if-revision", "0", ep}, 0, "OK\n", ""},
		{"set nx fails", []string{"kv", "set", "greeting", "x", "--nx", ep}, 1, "", `Error: kv: key "greeting" exists`},
		{"nx and xx exclusive", []string{"kv", "set", "a", "b", "--nx", "--xx", ep}, 1, "", "Error: if any flags in the group"},
		{"bad output", []string{"kv", "get", "greeting", "-o", "yaml", ep}, 1, "", `Error: --output "yaml"`},
		{"serve needs an id", []string{"serve", "--data-dir", "unused"}, 1, "", "Error: cluster: config: id must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErrOut) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tt.wantErrOut)
			}
		})
	}

}

func TestCLI_SetFlagsReachRequest(t *testing.T) {
	f, addr := startFakeKV(t)
	t.Setenv("CONCLAVE_ENDPOINTS", addr)
	if code, _, errOut := runCLI("kv", "set", "k", "v", "--ttl", "1500ms", "--if-revision", "0", "--prev"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f.mu.Lock()
	r := f.lastSet
	f.mu.Unlock()
	if r.GetTtlMs() != 1500 || r.IfRevision == nil || r.GetIfRevision() != 0 || !r.GetReturnPrevious() || r.GetRequestId() == "" {
		t.Fatalf("request = %v: want ttl 1500, if_revision 0, return_previous and a request id", r)
	}
}

func TestCLI_GetJSON(t *testing.T) {
	_, addr := startFakeKV(t)
	code, out, errOut := runCLI("kv", "get", "greeting", "-o", "json", "--endpoints", addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Found bool `json:"found"`
		Kv    struct {
			Value       []byte `json:"value"`
			ModRevision string `json:"modRevision"`
		} `json:"kv"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if !got.Found || string(got.Kv.Value) != "hello" || got.Kv.ModRevision != "7" {
		t.Fatalf("json = %+v", got)
	}
}
