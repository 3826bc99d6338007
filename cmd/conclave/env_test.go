package main

import (
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"endpoints", "CONCLAVE_ENDPOINTS"},
		{"grpc-addr", "CONCLAVE_GRPC_ADDR"},
		{"value-size", "CONCLAVE_VALUE_SIZE"},
	}
	for _, tt := range tests {
		if got := envName(tt.flag); got != tt.want {
			t.Errorf("envName(%q) = %q, want %q", tt.flag, got, tt.want)
		}
	}
}

func TestBindEnv(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string        // --grpc-addr after binding
		wantDur time.Duration // --timeout after binding
		wantErr bool
	}{
		{"defaults", nil, nil, "def", time.Second, false},
		{"env sets unset flags", nil, map[string]string{"CONCLAVE_GRPC_ADDR": "env", "CONCLAVE_TIMEOUT": "3s"}, "env", 3 * time.Second, false},
		{"command line wins", []string{"--grpc-addr", "cli"}, map[string]string{"CONCLAVE_GRPC_ADDR": "env"}, "cli", time.Second, false},
		{"inherited persistent flag", []string{}, map[string]string{"CONCLAVE_TIMEOUT": "2s"}, "def", 2 * time.Second, false},
		{"bad value", nil, map[string]string{"CONCLAVE_TIMEOUT": "soon"}, "def", time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var addr string
			var timeout time.Duration
			var bindErr error
			parent := &cobra.Command{Use: "p"}
			parent.PersistentFlags().DurationVar(&timeout, "timeout", time.Second, "")
			child := &cobra.Command{Use: "c", RunE: func(cmd *cobra.Command, _ []string) error {
				bindErr = bindEnv(cmd)
				return nil
			}}
			child.Flags().StringVar(&addr, "grpc-addr", "def", "")
			parent.AddCommand(child)
			parent.SetArgs(append([]string{"c"}, tt.args...))
			if err := parent.Execute(); err != nil {
				t.Fatal(err)
			}
			if (bindErr != nil) != tt.wantErr {
				t.Fatalf("bindEnv error = %v, wantErr %v", bindErr, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if addr != tt.want || timeout != tt.wantDur {
				t.Fatalf("grpc-addr = %q, timeout = %v; want %q, %v", addr, timeout, tt.want, tt.wantDur)
			}
		})
	}
}
