package chaos

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxDropBytes bounds how many bytes a dropped connection forwards before it is closed.
const maxDropBytes = 1024

// dialTimeout bounds how long a Link waits to reach its target.
const dialTimeout = 5 * time.Second

// A Link is a TCP proxy for one directed link: it accepts connections on its own address
// and pipes bytes both ways to a target address. It can be cut (every open connection is
// closed and new ones are closed on accept), healed, delayed and made to drop
// connections. All methods are safe for concurrent use; after Close they do nothing.
type Link struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // nanoseconds each forwarded chunk waits

	mu     sync.Mutex
	cut    bool
	closed bool
	pipes  map[*pipe]struct{}
	drop   float64    // probability that a new connection is dropped
	rng    *rand.Rand // draws drop decisions; guarded by mu
	wg     sync.WaitGroup
}

// NewLink listens on listen ("127.0.0.1:0" picks a free port) and forwards every accepted
// connection to target. The Link starts healed, without delay or drops.
func NewLink(listen, target string) (*Link, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	l := &Link{ln: ln, target: target, pipes: make(map[*pipe]struct{})}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address the Link listens on: dial it to reach the target.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Target is the address the Link forwards to.
func (l *Link) Target() string { return l.target }

// Cut closes every open connection through the Link and refuses new ones (they are
// accepted and closed at once) until Heal.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.cut = true
	l.closeAllLocked()
}

// Heal makes the Link forward new connections again after Cut.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
}

// IsCut reports whether the Link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// SetDelay makes each chunk forwarded, in both directions, wait d first; 0 means none.
// It applies to open connections from their next chunk on.
func (l *Link) SetDelay(d time.Duration) { l.delay.Store(int64(max(d, 0))) }

// Delay is the delay set by SetDelay.
func (l *Link) Delay() time.Duration { return time.Duration(l.delay.Load()) }

// SetDropRate makes each new connection, with probability p, be closed after forwarding
// a random number of bytes below 1024 (counted over both directions). Decisions are drawn
// from a generator seeded with seed, so a sequence of connections is reproducible. p <= 0
// turns drops off.
func (l *Link) SetDropRate(p float64, seed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drop = p
	l.rng = rand.New(rand.NewPCG(uint64(seed), 0x636f6e636c617665))
}

// Close stops accepting, closes every connection and waits for the Link's goroutines.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closeAllLocked()
	l.mu.Unlock()
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

func (l *Link) closeAllLocked() {
	for p := range l.pipes {
		p.close()
		delete(l.pipes, p)
	}
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // a transient accept error (e.g. EMFILE): back off
			continue
		}
		l.mu.Lock()
		if l.cut || l.closed {
			l.mu.Unlock()
			c.Close()
			continue
		}
		p := &pipe{client: c, budget: -1, done: make(chan struct{})}
		if l.drop > 0 && l.rng != nil && l.rng.Float64() < l.drop {
			p.budget = l.rng.Int64N(maxDropBytes)
		}
		l.pipes[p] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(p)
	}
}

func (l *Link) forget(p *pipe) {
	l.mu.Lock()
	delete(l.pipes, p)
	l.mu.Unlock()
}

// serve dials the target for p and pipes both directions until either side fails, the
// byte budget runs out, or the Link cuts p.
func (l *Link) serve(p *pipe) {
	defer l.wg.Done()
	defer l.forget(p)
	defer p.close()
	t, err := net.DialTimeout("tcp", l.target, dialTimeout)
	if err != nil {
		return
	}
	if !p.setTarget(t) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.copy(p, t, p.client) }()
	go func() { defer wg.Done(); l.copy(p, p.client, t) }()
	wg.Wait()
}

// copy forwards src to dst chunk by chunk, applying the delay and p's byte budget. On EOF
// it half-closes dst so the other direction can finish; on any other end it closes p.
func (l *Link) copy(p *pipe, dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := l.Delay(); d > 0 && !p.wait(d) {
				return
			}
			chunk, last := p.spend(buf[:n])
			if _, werr := dst.Write(chunk); werr != nil || last {
				p.close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if hc, ok := dst.(interface{ CloseWrite() error }); ok {
					hc.CloseWrite()
					return
				}
			}
			p.close()
			return
		}
	}
}

// A pipe is one proxied connection: the accepted client side and the dialled target.
type pipe struct {
	client net.Conn

	mu     sync.Mutex
	target net.Conn
	closed bool
	done   chan struct{} // closed by close
	budget int64         // bytes left before a drop; -1 = unlimited
}

// setTarget attaches the dialled target; it reports false (and closes t) if p was
// already closed.
func (p *pipe) setTarget(t net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		t.Close()
		return false
	}
	p.target = t
	return true
}

// wait sleeps d unless p is closed first; it reports whether p is still open.
func (p *pipe) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.done:
		return false
	}
}

// spend takes chunk's bytes from the budget: it returns the part that may be forwarded
// and whether the budget is now exhausted (the pipe must then be closed).
func (p *pipe) spend(chunk []byte) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.budget < 0 {
		return chunk, false
	}
	if int64(len(chunk)) >= p.budget {
		chunk = chunk[:p.budget]
		p.budget = 0
		return chunk, true
	}
	p.budget -= int64(len(chunk))
	return chunk, false
}

func (p *pipe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	p.client.Close()
	if p.target != nil {
		p.target.Close()
	}
}
