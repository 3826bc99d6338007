package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// importPolicies is a RateLimitService that only stores policies, listing them one page
// of two at a time (page tokens are the last name), for driving `ratelimit import`.
type importPolicies struct {
	conclavev1grpc.UnimplementedRateLimitServiceServer
	mu       sync.Mutex
	policies map[string]*conclavev1.RateLimitPolicy
	writes   int
}

func (f *importPolicies) PutPolicy(_ context.Context, r *conclavev1.PutPolicyRequest) (*conclavev1.PutPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies[r.GetPolicy().GetName()] = proto.CloneOf(r.GetPolicy())
	f.writes++
	return &conclavev1.PutPolicyResponse{}, nil
}

func (f *importPolicies) DeletePolicy(_ context.Context, r *conclavev1.DeletePolicyRequest) (*conclavev1.DeletePolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.policies[r.GetName()]
	delete(f.policies, r.GetName())
	f.writes++
	return &conclavev1.DeletePolicyResponse{Deleted: ok}, nil
}

func (f *importPolicies) ListPolicies(_ context.Context, r *conclavev1.ListPoliciesRequest) (*conclavev1.ListPoliciesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.policies {
		if strings.HasPrefix(n, r.GetPrefix()) && n > r.GetPageToken() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	resp := &conclavev1.ListPoliciesResponse{}
	for i, n := range names {
		if i == 2 {
			resp.NextPageToken = names[1]
			break
		}
		resp.Policies = append(resp.Policies, proto.CloneOf(f.policies[n]))
	}
	return resp, nil
}

func (f *importPolicies) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n, p := range f.policies {
		out = append(out, n+" "+describeEnvoyPolicy(p))
	}
	slices.Sort(out)
	return out
}

func startImportPolicies(t *testing.T) (*importPolicies, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &importPolicies{policies: map[string]*conclavev1.RateLimitPolicy{
		// Another domain's policy, and one outside Envoy's prefix: an import leaves both.
		"envoy/other/key":  {Name: "envoy/other/key", Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_FIXED_WINDOW, Limit: 1, PeriodMs: 1000},
		"api/login-per-ip": {Name: "api/login-per-ip", Limit: 5, PeriodMs: 60000},
	}}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterRateLimitServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

// runImport runs the import command as `conclave ratelimit import` would, with stdin.
func runImportCmd(t *testing.T, addr, stdin string, args ...string) (string, error) {
	t.Helper()
	o := &clientOptions{endpoints: []string{addr}, output: outputTable, timeout: 10 * time.Second}
	cmd := newRateLimitImportCmd(o)
	cmd.Flags().StringVarP(&o.output, "output", "o", outputTable, "") // a persistent flag of `ratelimit`
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SetContext(context.Background())
	err := cmd.Execute()
	return out.String(), err
}

func writeImportFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLI_RateLimitImport(t *testing.T) {
	f, addr := startImportPolicies(t)
	v1 := writeImportFile(t, "edge.yaml", `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: remote_address
    value: 10.0.0.9
    rate_limit: {unlimited: true}
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 2}
  - key: plan
    value: free
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
`)
	out, err := runImportCmd(t, addr, "", v1)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if !strings.Contains(out, `domain "edge" imported: 4 created, 0 updated, 0 deleted, 0 unchanged`) ||
		!strings.Contains(out, "envoy/edge/message_type=marketing/to_number  2/day") {
		t.Fatalf("output:\n%s", out)
	}
	want := []string{
		"api/login-per-ip 5/minute RATE_LIMIT_ALGORITHM_UNSPECIFIED",
		"envoy/edge/message_type=marketing/to_number 2/day",
		"envoy/edge/plan=free 1/second shadow",
		"envoy/edge/remote_address 3/minute",
		"envoy/edge/remote_address=10.0.0.9 unlimited",
		"envoy/other/key 1/second",
	}
	if got := f.names(); !slices.Equal(got, want) {
		t.Fatalf("policies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The next version, from stdin: a dry run writes nothing; the import replaces the domain.
	const v2 = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: remote_address
    value: 10.0.0.9
    rate_limit: {unlimited: true}
`
	writes := f.writes
	out, err = runImportCmd(t, addr, v2, "--dry-run", "-o", "json", "-")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	var dry struct {
		DryRun  bool `json:"dry_run"`
		Domains []struct {
			Domain  string `json:"domain"`
			Changes []struct {
				Op     string `json:"op"`
				Policy struct {
					Name string `json:"name"`
				} `json:"policy"`
			} `json:"changes"`
		} `json:"domains"`
	}
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("dry run output %q: %v", out, err)
	}
	var ops []string
	for _, c := range dry.Domains[0].Changes {
		ops = append(ops, c.Op+" "+c.Policy.Name)
	}
	wantOps := []string{
		"update envoy/edge/remote_address",
		"delete envoy/edge/message_type=marketing/to_number",
		"delete envoy/edge/plan=free",
		"keep envoy/edge/remote_address=10.0.0.9",
	}
	if !dry.DryRun || dry.Domains[0].Domain != "edge" || !slices.Equal(ops, wantOps) || f.writes != writes {
		t.Fatalf("dry run: %+v (%d writes), want %v and no writes", dry, f.writes-writes, wantOps)
	}
	if out, err = runImportCmd(t, addr, v2, "-"); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if !strings.Contains(out, `domain "edge" imported: 0 created, 1 updated, 2 deleted, 1 unchanged`) {
		t.Fatalf("output:\n%s", out)
	}
	want = []string{
		"api/login-per-ip 5/minute RATE_LIMIT_ALGORITHM_UNSPECIFIED",
		"envoy/edge/remote_address 5/minute",
		"envoy/edge/remote_address=10.0.0.9 unlimited",
		"envoy/other/key 1/second",
	}
	if got := f.names(); !slices.Equal(got, want) {
		t.Fatalf("policies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCLI_RateLimitImportRefusesBadFiles(t *testing.T) {
	f, addr := startImportPolicies(t)
	good := writeImportFile(t, "good.yaml", "domain: edge\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no file", nil, "requires at least 1 arg"},
		{"missing file", []string{filepath.Join(t.TempDir(), "nope.yaml")}, "no such file"},
		{"bad unit", []string{good, writeImportFile(t, "bad.yaml", "domain: x\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n")},
			`bad.yaml: envoyrl: descriptors[0].rate_limit.unit: invalid unit "fortnight"`},
		{"one domain twice", []string{good, good}, `domain "edge" is also in`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runImportCmd(t, addr, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q\n%s", err, tt.want, out)
			}
			if f.writes != 0 {
				t.Fatal("a refused import wrote")
			}
		})
	}
}
