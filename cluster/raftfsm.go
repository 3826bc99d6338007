package cluster

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/conclave-dev/conclave/fsm"
)

// raftFSM adapts fsm.Machine to raft.BatchingFSM and wakes readers waiting for an index.
type raftFSM struct {
	m       *fsm.Machine
	applied *notifier
}

var (
	_ raft.BatchingFSM = (*raftFSM)(nil)
	_ raft.FSMSnapshot = (*raftSnapshot)(nil)
)

// Apply is called by raft for a single entry; it delegates to ApplyBatch.
func (f *raftFSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies command entries and records configuration entries as applied, so
// the machine's applied index is exact. Called only from raft's FSM goroutine.
func (f *raftFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = f.m.Apply(l.Index, l.Data)
		} else {
			f.m.Advance(l.Index)
		}
	}
	f.applied.notify()
	return out
}

// Snapshot captures a copy-on-write clone; Persist streams it outside the FSM lock.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &raftSnapshot{s: f.m.Snapshot()}, nil
}

// Restore replaces the machine's state from a snapshot.
func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.m.Restore(rc); err != nil {
		return err
	}
	f.applied.notify()
	return nil
}

type raftSnapshot struct{ s *fsm.Snapshot }

func (s *raftSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *raftSnapshot) Release() {}

// notifier lets goroutines wait for an event without polling (the machine applied an
// entry, leadership changed): each notify closes the current channel and makes a new one.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier {
	return &notifier{ch: make(chan struct{})}
}

// wait returns a channel closed at the next notify.
func (a *notifier) wait() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ch
}

func (a *notifier) notify() {
	a.mu.Lock()
	close(a.ch)
	a.ch = make(chan struct{})
	a.mu.Unlock()
}
