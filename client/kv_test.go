package client

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

func TestSetOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  SetOption
		want *conclavev1.SetRequest
	}{
		{"ttl", WithTTL(1500 * time.Millisecond), &conclavev1.SetRequest{TtlMs: 1500}},
		{"ttl rounds up", WithTTL(time.Microsecond), &conclavev1.SetRequest{TtlMs: 1}},
		{"if absent", IfAbsent(), &conclavev1.SetRequest{IfAbsent: true}},
		{"if present", IfPresent(), &conclavev1.SetRequest{IfPresent: true}},
		{"if revision 0", IfRevision(0), &conclavev1.SetRequest{IfRevision: proto.Uint64(0)}},
		{"keep ttl", KeepTTL(), &conclavev1.SetRequest{KeepTtl: true}},
		{"return previous", ReturnPrevious(), &conclavev1.SetRequest{ReturnPrevious: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := &conclavev1.SetRequest{}
			tt.opt(got)
			if !proto.Equal(got, tt.want) {
				t.Fatalf("request = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"default", DefaultConfig(), false},
		{"no endpoints", Config{}, true},
		{"empty endpoint", Config{Endpoints: []string{"a:1", " "}}, true},
		{"negative timeout", Config{Endpoints: []string{"a:1"}, RequestTimeout: -1}, true},
		{"zero timeouts", Config{Endpoints: []string{"a:1"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
