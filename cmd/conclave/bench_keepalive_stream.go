package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
	"github.com/conclave-dev/conclave/proto/conclave/v1/conclavev1grpc"
)

// kaSchedule says when each keep-alive is due: slot k of n at start + k·period/n, then
// every period after, so the keep-alives of all slots are spread evenly over time. The
// measured phase [from, to) is set once every session exists; until then the schedule
// runs on without end.
type kaSchedule struct {
	start    time.Time
	period   time.Duration
	n        int
	from, to atomic.Int64 // unix nanoseconds; to is 0 until measure
}

func (s *kaSchedule) due(round, k int) time.Time {
	return s.start.Add(time.Duration(round)*s.period + time.Duration(int64(s.period)*int64(k)/int64(s.n)))
}

// measure sets the measured phase; keep-alives due at or after to are not sent.
func (s *kaSchedule) measure(from, to time.Time) {
	s.from.Store(from.UnixNano())
	s.to.Store(to.UnixNano())
}

// kaMinGap bounds how often a stream's sender wakes: it sends everything due at once,
// at most every kaMinGap, so a hundred streams cost at most 10,000 wake-ups a second
// however many sessions they carry.
const kaMinGap = 10 * time.Millisecond

// kaStream keeps slots j, j+of, j+2·of, … of the schedule alive over one KeepAliveStream
// at a time. Its sender (run) sends what is due; a receiver goroutine per stream matches
// the answers, which the server gives in order, to what was sent. The server ends a
// stream at the first session it does not know: that session is lost, the stream is
// reopened and the keep-alives sent after it are sent again.
type kaStream struct {
	j, of   int
	ids     []atomic.Uint64 // every slot's session id, 0 until created
	sc      conclavev1grpc.SessionServiceClient
	timeout time.Duration

	// Owned by run; read once run has returned.
	sent   int
	maxLag time.Duration

	mu         sync.Mutex
	inflight   []kaPending // sent on the current stream and not answered, in order
	lost       []bool      // by local slot m (slot j+m·of)
	answered   int
	unanswered int
	lostN      int
	errors     int
	firstErr   error
	latencies  []time.Duration
}

// kaPending is one keep-alive sent and not yet answered.
type kaPending struct {
	m        int // local slot
	id       uint64
	at       time.Time
	measured bool // due inside the measured phase
}

// kaConn is one open KeepAliveStream and its receiver.
type kaConn struct {
	stream  conclavev1grpc.SessionService_KeepAliveStreamClient // nil if it did not open
	cancel  context.CancelFunc
	closing atomic.Bool
	broken  chan error // the receiver's last word: io.EOF after a clean close, or why it ended
}

// slots returns how many of n slots the stream serves.
func (s *kaStream) slots(n int) int { return (n - s.j + s.of - 1) / s.of }

// run sends the stream's keep-alives as they fall due until the measured phase ends or
// ctx does, reopening the stream whenever it breaks.
func (s *kaStream) run(ctx context.Context, sch *kaSchedule) {
	var (
		c         *kaConn
		retry     []kaPending
		round, m  int
		slots     = len(s.lost)
		timer     = time.NewTimer(0)
		backoff   = time.NewTimer(0)
		needPause = false
	)
	defer timer.Stop()
	defer backoff.Stop()
	for {
		if c == nil {
			if needPause {
				backoff.Reset(100 * time.Millisecond)
				select {
				case <-backoff.C:
				case <-ctx.Done():
					s.drop(retry)
					return
				}
			}
			c = s.open(ctx)
			now := time.Now()
			for _, p := range retry {
				p.at = now
				s.send(c, p)
			}
			retry = nil
		}
		select {
		case <-ctx.Done():
			s.close(c, false)
			return
		case err := <-c.broken:
			c.cancel()
			s.mu.Lock()
			retry = append(retry, s.inflight...)
			s.inflight = nil
			s.mu.Unlock()
			c, needPause = nil, status.Code(err) != codes.NotFound
			continue
		case <-timer.C:
		}
		now := time.Now()
		to := sch.to.Load()
		for {
			due := sch.due(round, s.j+m*s.of)
			if to != 0 && due.UnixNano() >= to {
				s.close(c, true)
				return
			}
			if due.After(now) {
				timer.Reset(max(due.Sub(now), kaMinGap))
				break
			}
			measured := to != 0 && due.UnixNano() >= sch.from.Load()
			if id := s.ids[s.j+m*s.of].Load(); id != 0 && s.send(c, kaPending{m: m, id: id, at: now, measured: measured}) && measured {
				s.sent++
				s.maxLag = max(s.maxLag, now.Sub(due))
			}
			if m++; m == slots {
				m, round = 0, round+1
			}
		}
	}
}

// send sends p on c unless its session is lost, and reports whether it did. A failed
// Send shows as the receiver's error, and p is sent again on the next stream.
func (s *kaStream) send(c *kaConn, p kaPending) bool {
	s.mu.Lock()
	if s.lost[p.m] {
		s.mu.Unlock()
		return false
	}
	s.inflight = append(s.inflight, p)
	s.mu.Unlock()
	if c.stream != nil {
		_ = c.stream.Send(&conclavev1.KeepAliveStreamRequest{Id: p.id})
	}
	return true
}

// open starts a stream and its receiver. A stream that cannot start is returned broken.
func (s *kaStream) open(ctx context.Context) *kaConn {
	sctx, cancel := context.WithCancel(ctx)
	c := &kaConn{cancel: cancel, broken: make(chan error, 1)}
	stream, err := s.sc.KeepAliveStream(sctx)
	if err != nil {
		s.fail(c, err)
		c.broken <- err
		return c
	}
	c.stream = stream
	go s.receive(c)
	return c
}

// receive matches c's answers to the keep-alives in flight until the stream ends, then
// says why on c.broken.
func (s *kaStream) receive(c *kaConn) {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			s.fail(c, err)
			c.broken <- err
			return
		}
		now := time.Now()
		s.mu.Lock()
		if len(s.inflight) == 0 || s.inflight[0].id != resp.GetId() {
			s.mu.Unlock()
			err := fmt.Errorf("bench: an answer for session %d does not match the oldest keep-alive in flight", resp.GetId())
			s.fail(c, err)
			c.cancel()
			c.broken <- err
			return
		}
		p := s.inflight[0]
		s.inflight = s.inflight[1:]
		switch {
		case resp.GetTtlMs() <= 0:
			s.lost[p.m] = true
			s.lostN++
		case p.measured:
			s.answered++
			s.latencies = append(s.latencies, now.Sub(p.at))
		}
		s.mu.Unlock()
	}
}

// fail records why c ended: NotFound loses the oldest session in flight (the server
// answers in order and stops at the first it does not know); a clean end or our own
// cancellation is no error.
func (s *kaStream) fail(c *kaConn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case status.Code(err) == codes.NotFound && len(s.inflight) > 0:
		s.lost[s.inflight[0].m] = true
		s.lostN++
		s.inflight = s.inflight[1:]
	case errors.Is(err, io.EOF) || c.closing.Load():
	default:
		s.errors++
		if s.firstErr == nil {
			s.firstErr = err
		}
	}
}

// close ends c: with drain, it half-closes and waits up to the timeout for the answers
// in flight. Whatever is still unanswered then is counted.
func (s *kaStream) close(c *kaConn, drain bool) {
	done := false
	if drain && c.stream != nil {
		_ = c.stream.CloseSend()
		t := time.NewTimer(s.timeout)
		select {
		case <-c.broken:
			done = true
		case <-t.C:
		}
		t.Stop()
	}
	c.closing.Store(true)
	c.cancel()
	if !done && c.stream != nil {
		<-c.broken // the receiver has returned
	}
	s.mu.Lock()
	inflight := s.inflight
	s.inflight = nil
	s.mu.Unlock()
	s.drop(inflight)
}

// drop counts the measured keep-alives of ps as unanswered.
func (s *kaStream) drop(ps []kaPending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		if p.measured {
			s.unanswered++
		}
	}
}
