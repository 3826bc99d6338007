package envoyrl

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// Op is what an import does to one policy.
type Op string

// The steps of an import.
const (
	OpCreate Op = "create" // a policy the domain did not have
	OpUpdate Op = "update" // a policy whose limit, period or shadow mode changed
	OpDelete Op = "delete" // a policy of the domain no longer in the configuration
	OpKeep   Op = "keep"   // a policy stored as the configuration says
)

// Change is one step of an import: Policy is the new policy (OpDelete: the stored one).
type Change struct {
	Op     Op
	Policy *conclavev1.RateLimitPolicy
}

// Diff returns the changes that make stored — the policies stored under c's domain
// prefix — equal to c's policies: creates and updates in name order, then deletes in
// name order, then the policies kept. An import is a replace: a policy of the domain
// that c does not have is deleted.
func Diff(c *Config, stored []*conclavev1.RateLimitPolicy) ([]Change, error) {
	want, err := c.Policies()
	if err != nil {
		return nil, err
	}
	prefix := DomainPrefix(c.Domain)
	have := make(map[string]*conclavev1.RateLimitPolicy, len(stored))
	for _, p := range stored {
		if strings.HasPrefix(p.GetName(), prefix) {
			have[p.GetName()] = p
		}
	}
	var puts, deletes, keeps []Change
	wanted := make(map[string]bool, len(want))
	for _, p := range want {
		wanted[p.GetName()] = true
		switch old, ok := have[p.GetName()]; {
		case !ok:
			puts = append(puts, Change{OpCreate, p})
		case proto.Equal(old, p):
			keeps = append(keeps, Change{OpKeep, p})
		default:
			puts = append(puts, Change{OpUpdate, p})
		}
	}
	for _, p := range stored { // in name order, as listed
		if strings.HasPrefix(p.GetName(), prefix) && !wanted[p.GetName()] {
			deletes = append(deletes, Change{OpDelete, p})
		}
	}
	return append(append(puts, deletes...), keeps...), nil
}

// Stored lists every policy stored under domain's prefix (linearizable reads, page by page).
func Stored(ctx context.Context, rl conclavev1grpc.RateLimitServiceClient, domain string) ([]*conclavev1.RateLimitPolicy, error) {
	var out []*conclavev1.RateLimitPolicy
	req := &conclavev1.ListPoliciesRequest{Prefix: DomainPrefix(domain), PageSize: 1000}
	for {
		resp, err := rl.ListPolicies(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list policies of domain %q: %w", domain, err)
		}
		out = append(out, resp.GetPolicies()...)
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// Import makes the policies stored for c's domain those of c, through rl: it lists them,
// computes Diff and, unless dryRun, applies it — each create or update a PutPolicy, then
// each delete a DeletePolicy — and returns the changes. Puts go first so that a limit
// is never missing while the domain changes; the Envoy service maps a descriptor whose
// policy was deleted under it again. If a call fails, Import stops and returns the
// changes applied so far with the error; running it again finishes the import.
func Import(ctx context.Context, rl conclavev1grpc.RateLimitServiceClient, c *Config, dryRun bool) ([]Change, error) {
	stored, err := Stored(ctx, rl, c.Domain)
	if err != nil {
		return nil, err
	}
	changes, err := Diff(c, stored)
	if err != nil || dryRun {
		return changes, err
	}
	for i, ch := range changes {
		switch ch.Op {
		case OpCreate, OpUpdate:
			_, err = rl.PutPolicy(ctx, &conclavev1.PutPolicyRequest{Policy: ch.Policy})
		case OpDelete:
			_, err = rl.DeletePolicy(ctx, &conclavev1.DeletePolicyRequest{Name: ch.Policy.GetName()})
		}
		if err != nil {
			return changes[:i], fmt.Errorf("%s policy %q: %w", ch.Op, ch.Policy.GetName(), err)
		}
	}
	return changes, nil
}
