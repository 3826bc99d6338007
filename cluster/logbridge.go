package cluster

import (
	"bytes"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
)

// newRaftLogger bridges raft's hclog output into zap: each line hclog writes becomes
// one zap entry at the level hclog gave it.
func newRaftLogger(log *zap.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:            "raft",
		Level:           hclog.Info,
		Output:          &zapWriter{log: log.WithOptions(zap.AddCallerSkip(3))},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

type zapWriter struct{ log *zap.Logger }

func (w *zapWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case bytes.HasPrefix(p, []byte("[ERROR]")):
		w.log.Error(line)
	case bytes.HasPrefix(p, []byte("[WARN]")):
		w.log.Warn(line)
	case bytes.HasPrefix(p, []byte("[DEBUG]")), bytes.HasPrefix(p, []byte("[TRACE]")):
		w.log.Debug(line)
	default:
		w.log.Info(line)
	}
	return len(p), nil
}
