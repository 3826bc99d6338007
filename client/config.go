package client

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Default values used by DefaultConfig and by New for zero fields.
const (
	// DefaultDialTimeout bounds one connection attempt to an endpoint.
	DefaultDialTimeout = 2 * time.Second
	// DefaultRequestTimeout bounds a call (all its retries) whose context has no deadline.
	DefaultRequestTimeout = 10 * time.Second
)

// Config configures a Client.
type Config struct {
	// Endpoints are the gRPC addresses (host:port) of the cluster's nodes. At least one.
	Endpoints []string
	// DialTimeout bounds one connection attempt to one endpoint; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds a unary call, retries included, but only when the caller's
	// context has no deadline; zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives debug logs of failovers; nil means no logging.
	Logger *zap.Logger
	// DialOptions are appended to the client's own dial options (insecure transport
	// credentials, connect backoff); tests use them to dial in-process listeners.
	DialOptions []grpc.DialOption
}

// DefaultConfig returns a Config for a three-node cluster on loopback.
func DefaultConfig() Config {
	return Config{
		Endpoints:      []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
		DialTimeout:    DefaultDialTimeout,
		RequestTimeout: DefaultRequestTimeout,
	}
}

// Validate reports whether the Config can be used; zero timeouts are valid (defaults).
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("client: no endpoints")
	}
	for i, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return fmt.Errorf("client: endpoint %d is empty", i)
		}
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("client: dial timeout %v is negative", c.DialTimeout)
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("client: request timeout %v is negative", c.RequestTimeout)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}
