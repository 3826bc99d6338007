package main

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// fakeRateLimitCLI is a RateLimitService for driving the CLI. Keys decide by their
// name: "denied…" is denied with retry after 1.5 s, "huge…" can never be allowed, the
// others are allowed with 4 of 5 remaining. A CONCURRENCY key gets slot 7; a shadow-mode
// key is allowed but would be denied. Policies are stored in a map and listed two a page.
type fakeRateLimitCLI struct {
	conclavev1grpc.UnimplementedRateLimitServiceServer
	mu         sync.Mutex
	policies   map[string]*conclavev1.RateLimitPolicy
	lastCheck  *conclavev1.CheckRequest
	lastPeek   *conclavev1.PeekRequest
	lastRefund *conclavev1.RefundRequest
	lastPut    *conclavev1.PutPolicyRequest
	listPages  int
}

func (f *fakeRateLimitCLI) verdicts(keys []*conclavev1.RateLimitKey) (bool, []*conclavev1.KeyVerdict) {
	all := true
	var vs []*conclavev1.KeyVerdict
	for _, k := range keys {
		v := &conclavev1.KeyVerdict{Key: k.GetKey(), Allowed: true, Limit: 5, Remaining: 4, ResetAfterMs: 60_000}
		switch {
		case strings.HasPrefix(k.GetKey(), "denied"):
			v.Allowed, v.Remaining, v.RetryAfterMs = false, 0, 1500
		case strings.HasPrefix(k.GetKey(), "huge"):
			v.Allowed, v.RetryAfterMs = false, -1
		}
		if k.GetInline().GetAlgorithm() == conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_CONCURRENCY && v.Allowed {
			v.Slots = []uint64{7}
		}
		if k.GetInline().GetShadowMode() {
			v.Shadow, v.WouldAllow, v.Allowed = true, v.Allowed, true
		}
		all = all && v.Allowed
		vs = append(vs, v)
	}
	return all, vs
}

func (f *fakeRateLimitCLI) Check(_ context.Context, r *conclavev1.CheckRequest) (*conclavev1.CheckResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCheck = proto.CloneOf(r)
	allowed, vs := f.verdicts(r.GetKeys())
	return &conclavev1.CheckResponse{Allowed: allowed, Verdicts: vs}, nil
}

func (f *fakeRateLimitCLI) Peek(_ context.Context, r *conclavev1.PeekRequest) (*conclavev1.PeekResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPeek = proto.CloneOf(r)
	allowed, vs := f.verdicts(r.GetKeys())
	return &conclavev1.PeekResponse{Allowed: allowed, Verdicts: vs}, nil
}

func (f *fakeRateLimitCLI) Refund(_ context.Context, r *conclavev1.RefundRequest) (*conclavev1.RefundResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRefund = proto.CloneOf(r)
	resp := &conclavev1.RefundResponse{}
	for _, k := range r.GetKeys() {
		resp.Verdicts = append(resp.Verdicts, &conclavev1.KeyVerdict{Key: k.GetKey(), Allowed: true, Limit: 5, Remaining: 5})
	}
	return resp, nil
}

func (f *fakeRateLimitCLI) PutPolicy(_ context.Context, r *conclavev1.PutPolicyRequest) (*conclavev1.PutPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPut = proto.CloneOf(r)
	f.policies[r.GetPolicy().GetName()] = proto.CloneOf(r.GetPolicy())
	return &conclavev1.PutPolicyResponse{}, nil
}

func (f *fakeRateLimitCLI) GetPolicy(_ context.Context, r *conclavev1.GetPolicyRequest) (*conclavev1.GetPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.policies[r.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "ratelimit: policy %q not found", r.GetName())
	}
	return &conclavev1.GetPolicyResponse{Policy: p}, nil
}

func (f *fakeRateLimitCLI) ListPolicies(_ context.Context, r *conclavev1.ListPoliciesRequest) (*conclavev1.ListPoliciesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listPages++
	var names []string
	for n := range f.policies {
		if strings.HasPrefix(n, r.GetPrefix()) && n > r.GetPageToken() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	resp := &conclavev1.ListPoliciesResponse{}
	size := min(int(r.GetPageSize()), 2)
	if len(names) > size {
		names = names[:size]
		resp.NextPageToken = names[size-1]
	}
	for _, n := range names {
		resp.Policies = append(resp.Policies, f.policies[n])
	}
	return resp, nil
}

func (f *fakeRateLimitCLI) DeletePolicy(_ context.Context, r *conclavev1.DeletePolicyRequest) (*conclavev1.DeletePolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.policies[r.GetName()]
	delete(f.policies, r.GetName())
	return &conclavev1.DeletePolicyResponse{Deleted: ok}, nil
}

// startFakeRateLimitCLI serves a fakeRateLimitCLI on a loopback port.
func startFakeRateLimitCLI(t *testing.T) (*fakeRateLimitCLI, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRateLimitCLI{policies: map[string]*conclavev1.RateLimitPolicy{}}
	srv := grpc.NewServer()
	conclavev1grpc.RegisterRateLimitServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func TestCLI_RateLimit(t *testing.T) {
	_, addr := startFakeRateLimitCLI(t)
	ep := "--endpoints=" + addr
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string // substrings of stdout
		wantErrOut string   // substring of stderr
	}{
		{"check allowed", []string{"ratelimit", "check", "ip:1", "--rate", "5/1m", ep}, 0,
			[]string{"KEY   ALLOWED  LIMIT  REMAINING  RESET_AFTER  RETRY_AFTER\n", "ip:1  yes      5      4          1m0s         -\n"}, ""},
		{"check denied exits 0", []string{"ratelimit", "check", "denied", "--rate", "5/1m", ep}, 0,
			[]string{"denied  no       5      0          1m0s         1.5s\n"}, ""},
		{"check denied --exit-code", []string{"ratelimit", "check", "denied", "--rate", "5/1m", "--exit-code", ep}, 2,
			[]string{"denied  no"}, ""},
		{"check allowed --exit-code", []string{"ratelimit", "check", "ip:1", "--policy", "api", "--exit-code", ep}, 0,
			[]string{"ip:1  yes"}, ""},
		{"check never", []string{"ratelimit", "check", "huge", "--rate", "5/1m", "--cost", "6", ep}, 0,
			[]string{"huge  no       5      4          1m0s         never\n"}, ""},
		{"check several keys", []string{"ratelimit", "check", "ip:1", "denied", "--rate", "5/1m", ep}, 0,
			[]string{"ip:1    yes", "denied  no", "request: denied (nothing consumed)\n"}, ""},
		{"check several keys partial", []string{"ratelimit", "check", "ip:1", "denied", "--rate", "5/1m", "--partial", ep}, 0,
			[]string{"request: denied (allowed keys consumed)\n"}, ""},
		{"check concurrency slots", []string{"ratelimit", "check", "jobs", "--rate", "2/30s", "--algorithm", "concurrency", ep}, 0,
			[]string{"RETRY_AFTER  SLOTS\n", "jobs  yes      5      4          1m0s         -            7\n"}, ""},
		{"check shadow", []string{"ratelimit", "check", "denied", "--rate", "5/1m", "--shadow", "--exit-code", ep}, 0,
			[]string{"yes (shadow: would deny)"}, ""},
		{"peek denied --exit-code", []string{"ratelimit", "peek", "denied", "--policy", "api", "--exit-code", ep}, 2,
			[]string{"denied  no"}, ""},
		{"refund", []string{"ratelimit", "refund", "ip:1", "--rate", "5/1m", "--cost", "2", ep}, 0,
			[]string{"KEY   LIMIT  REMAINING  RESET_AFTER\nip:1  5      5          -\n"}, ""},
		{"policy and rate exclusive", []string{"ratelimit", "check", "k", "--policy", "api", "--rate", "5/1m", ep}, 1,
			nil, "Error: if any flags in the group [policy rate] are set none of the others can be"},
		{"policy or rate required", []string{"ratelimit", "check", "k", ep}, 1,
			nil, "Error: at least one of the flags in the group [policy rate] is required"},
		{"bad rate", []string{"ratelimit", "check", "k", "--rate", "5 per minute", ep}, 1,
			nil, `Error: --rate "5 per minute": no /`},
		{"bad algorithm", []string{"ratelimit", "check", "k", "--rate", "5/1m", "--algorithm", "leaky", ep}, 1,
			nil, `Error: --algorithm "leaky": want gcra, sliding, fixed or concurrency`},
		{"burst only for gcra", []string{"ratelimit", "check", "k", "--rate", "5/1m", "--algorithm", "sliding", "--burst", "2", ep}, 1,
			nil, "Error: --burst applies only to --algorithm gcra"},
		{"put needs a rate", []string{"ratelimit", "policy", "put", "api", ep}, 1,
			nil, `Error: required flag(s) "rate" not set`},
		{"get missing", []string{"ratelimit", "policy", "get", "nope", ep}, 1,
			nil, `Error: ratelimit: policy "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout = %q, want it to contain %q", out, w)
				}
			}
			if !strings.Contains(errOut, tt.wantErrOut) || (tt.wantErrOut == "" && errOut != "") {
				t.Errorf("stderr = %q, want %q", errOut, tt.wantErrOut)
			}
		})
	}
}

func TestCLI_RateLimitCheckJSON(t *testing.T) {
	_, addr := startFakeRateLimitCLI(t)
	for _, tt := range []struct {
		key  string
		want bool
	}{{"ip:1", true}, {"denied", false}} {
		code, out, errOut := runCLI("ratelimit", "check", tt.key, "--rate", "5/1m", "-o", "json", "--endpoints", addr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var got struct {
			Allowed  *bool `json:"allowed"`
			Verdicts []struct {
				Key          string `json:"key"`
				Allowed      *bool  `json:"allowed"`
				Limit        string `json:"limit"`
				RetryAfterMs string `json:"retryAfterMs"`
			} `json:"verdicts"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		if got.Allowed == nil || *got.Allowed != tt.want || len(got.Verdicts) != 1 || got.Verdicts[0].Allowed == nil ||
			*got.Verdicts[0].Allowed != tt.want || got.Verdicts[0].Key != tt.key || got.Verdicts[0].Limit != "5" {
			t.Fatalf("%s: json = %s: want allowed %v, at the top and in the key's verdict", tt.key, out, tt.want)
		}
	}
}

func TestCLI_RateLimitFlagsReachRequest(t *testing.T) {
	f, addr := startFakeRateLimitCLI(t)
	t.Setenv("CONCLAVE_ENDPOINTS", addr)
	if code, _, errOut := runCLI("ratelimit", "check", "ip:1", "--rate", "5/1m", "--burst", "3", "--cost", "2"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f.mu.Lock()
	r := f.lastCheck
	f.mu.Unlock()
	k := r.GetKeys()[0]
	want := &conclavev1.RateLimitPolicy{Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA, Limit: 5, PeriodMs: 60_000, Burst: 3}
	if k.GetKey() != "ip:1" || k.GetCost() != 2 || !proto.Equal(k.GetInline(), want) || r.GetPartial() || r.GetRequestId() == "" {
		t.Fatalf("check request = %v: want ip:1, cost 2, inline %v and a request id", r, want)
	}

	if code, _, errOut := runCLI("ratelimit", "peek", "a", "b", "--policy", "api", "--stale"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f.mu.Lock()
	p := f.lastPeek
	f.mu.Unlock()
	if len(p.GetKeys()) != 2 || p.GetKeys()[1].GetPolicy() != "api" || p.GetKeys()[1].GetCost() != 1 ||
		p.GetConsistency() != conclavev1.Consistency_CONSISTENCY_STALE {
		t.Fatalf("peek request = %v: want keys a and b under policy api, stale", p)
	}

	if code, _, errOut := runCLI("ratelimit", "refund", "jobs", "--rate", "2/30s", "--algorithm", "concurrency", "--slots", "7,9"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f.mu.Lock()
	rf := f.lastRefund
	f.mu.Unlock()
	if k := rf.GetKeys()[0]; !slices.Equal(k.GetSlots(), []uint64{7, 9}) || k.GetInline().GetLimit() != 2 ||
		k.GetInline().GetPeriodMs() != 30_000 || rf.GetRequestId() == "" {
		t.Fatalf("refund request = %v: want slots 7,9 under 2/30s and a request id", rf)
	}
}

func TestCLI_RateLimitPolicy(t *testing.T) {
	f, addr := startFakeRateLimitCLI(t)
	ep := "--endpoints=" + addr
	steps := []struct {
		name    string
		args    []string
		wantOut string // exact stdout
	}{
		{"put", []string{"ratelimit", "policy", "put", "api", "--rate", "100/1s", "--burst", "20", ep}, "OK\n"},
		{"put sliding", []string{"ratelimit", "policy", "put", "login", "--rate", "5/15m", "--algorithm", "sliding", "--shadow", ep}, "OK\n"},
		{"put hourly", []string{"ratelimit", "policy", "put", "api-hourly", "--rate", "1000/h", ep}, "OK\n"},
		{"get", []string{"ratelimit", "policy", "get", "api", ep},
			"NAME  ALGORITHM  RATE    BURST  SHADOW\napi   gcra       100/1s  20     no\n"},
		{"list pages through", []string{"ratelimit", "policy", "list", ep},
			"NAME        ALGORITHM  RATE     BURST  SHADOW\n" +
				"api         gcra       100/1s   20     no\n" +
				"api-hourly  gcra       1000/1h  1000   no\n" +
				"login       sliding    5/15m    -      yes\n"},
		{"list prefix", []string{"ratelimit", "policy", "list", "api-", ep},
			"NAME        ALGORITHM  RATE     BURST  SHADOW\napi-hourly  gcra       1000/1h  1000   no\n"},
		{"del", []string{"ratelimit", "policy", "del", "login", ep}, "1\n"},
		{"del again", []string{"ratelimit", "policy", "del", "login", ep}, "0\n"},
	}
	for _, tt := range steps {
		code, out, errOut := runCLI(tt.args...)
		if code != 0 || out != tt.wantOut {
			t.Fatalf("%s: exit %d stdout %q stderr %q; want 0 and %q", tt.name, code, out, errOut, tt.wantOut)
		}
	}
	f.mu.Lock()
	put, pages := f.lastPut, f.listPages
	f.mu.Unlock()
	want := &conclavev1.RateLimitPolicy{Name: "api-hourly", Algorithm: conclavev1.RateLimitAlgorithm_RATE_LIMIT_ALGORITHM_GCRA,
		Limit: 1000, PeriodMs: time.Hour.Milliseconds()}
	if !proto.Equal(put.GetPolicy(), want) || put.GetRequestId() == "" {
		t.Fatalf("put request = %v: want %v and a request id", put, want)
	}
	if pages != 3 { // two pages for the whole list, one for the prefix
		t.Fatalf("%d ListPolicies calls, want 3", pages)
	}

	code, out, _ := runCLI("ratelimit", "policy", "list", "-o", "json", ep)
	var ps []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(out), &ps); code != 0 || err != nil || len(ps) != 2 || ps[0].Name != "api" {
		t.Fatalf("list -o json: exit %d, %q (%v); want api and api-hourly", code, out, err)
	}
}

func TestParseRateSpec(t *testing.T) {
	tests := []struct {
		in      string
		limit   uint64
		period  time.Duration
		wantErr string
	}{
		{"5/1m", 5, time.Minute, ""},
		{"100/1s", 100, time.Second, ""},
		{"10/500ms", 10, 500 * time.Millisecond, ""},
		{"1000/h", 1000, time.Hour, ""},
		{" 7 / 2h30m ", 7, 150 * time.Minute, ""},
		{"5", 0, 0, "no /"},
		{"0/1s", 0, 0, "N must be a positive integer"},
		{"-1/1s", 0, 0, "N must be a positive integer"},
		{"5/soon", 0, 0, "PERIOD is not a duration"},
		{"5/1500us", 0, 0, "whole number of milliseconds"},
		{"5/0s", 0, 0, "whole number of milliseconds"},
	}
	for _, tt := range tests {
		limit, period, err := parseRateSpec(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRateSpec(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || limit != tt.limit || period != tt.period {
			t.Errorf("parseRateSpec(%q) = %d, %v, %v; want %d, %v", tt.in, limit, period, err, tt.limit, tt.period)
		}
		if got := formatRate(limit, period.Milliseconds()); strings.ReplaceAll(tt.in, " ", "") != got && tt.in != "1000/h" {
			t.Errorf("formatRate(parseRateSpec(%q)) = %q", tt.in, got)
		}
	}
}
