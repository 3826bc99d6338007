package chaos

import (
	"fmt"
	"slices"
	"time"
)

// A Net is a full mesh of Links for n nodes: one Link per ordered pair (from, to), so
// node from reaches node to by dialling Addr(from, to). Traffic in each direction between
// two nodes goes through its own Link, and a partition cuts both. Its methods are safe
// for concurrent use.
type Net struct {
	ids   []string            // sorted node ids
	links map[[2]string]*Link // (from, to) → Link
}

// NewNet starts one Link on a free loopback port for every ordered pair of distinct
// nodes in targets, which maps each node id to its real raft listen address.
func NewNet(targets map[string]string) (*Net, error) {
	n := &Net{links: make(map[[2]string]*Link)}
	for id := range targets {
		n.ids = append(n.ids, id)
	}
	slices.Sort(n.ids)
	for _, from := range n.ids {
		for _, to := range n.ids {
			if from == to {
				continue
			}
			l, err := NewLink("127.0.0.1:0", targets[to])
			if err != nil {
				n.Close()
				return nil, fmt.Errorf("chaos: link %s→%s: %w", from, to, err)
			}
			n.links[[2]string{from, to}] = l
		}
	}
	return n, nil
}

// IDs are the node ids, sorted.
func (n *Net) IDs() []string { return slices.Clone(n.ids) }

// Link is the Link carrying from's connections to to; it panics on an unknown pair.
func (n *Net) Link(from, to string) *Link {
	l, ok := n.links[[2]string{from, to}]
	if !ok {
		panic(fmt.Sprintf("chaos: no link from %q to %q", from, to))
	}
	return l
}

// Addr is the address node from must dial to reach node to.
func (n *Net) Addr(from, to string) string { return n.Link(from, to).Addr() }

// PeerAddrs maps every other node's id to the address node from must dial to reach it,
// for configuring from's raft address provider.
func (n *Net) PeerAddrs(from string) map[string]string {
	m := make(map[string]string, len(n.ids)-1)
	for _, to := range n.ids {
		if to != from {
			m[to] = n.Addr(from, to)
		}
	}
	return m
}

// Partition cuts every link between nodes in different groups and heals every link
// between nodes of the same group. A node named in no group is a group of its own. It
// panics on an unknown id or one named twice.
func (n *Net) Partition(groups ...[]string) {
	group := make(map[string]int, len(n.ids))
	for g, ids := range groups {
		for _, id := range ids {
			if !slices.Contains(n.ids, id) {
				panic(fmt.Sprintf("chaos: Partition: unknown node %q", id))
			}
			if _, dup := group[id]; dup {
				panic(fmt.Sprintf("chaos: Partition: node %q in two groups", id))
			}
			group[id] = g
		}
	}
	next := len(groups)
	for _, id := range n.ids {
		if _, ok := group[id]; !ok {
			group[id] = next
			next++
		}
	}
	for pair, l := range n.links {
		if group[pair[0]] == group[pair[1]] {
			l.Heal()
		} else {
			l.Cut()
		}
	}
}

// Isolate cuts node id off from every other node and heals the links among the others.
func (n *Net) Isolate(id string) {
	others := make([]string, 0, len(n.ids))
	for _, o := range n.ids {
		if o != id {
			others = append(others, o)
		}
	}
	n.Partition([]string{id}, others)
}

// HealAll heals every link.
func (n *Net) HealAll() {
	for _, l := range n.links {
		l.Heal()
	}
}

// SetDelay sets the per-chunk delay of every link.
func (n *Net) SetDelay(d time.Duration) {
	for _, l := range n.links {
		l.SetDelay(d)
	}
}

// SetDropRate sets every link's drop probability; each link's generator is seeded from
// seed and the link's place in sorted (from, to) order, so a run is reproducible.
func (n *Net) SetDropRate(p float64, seed int64) {
	i := int64(0)
	for _, from := range n.ids {
		for _, to := range n.ids {
			if from != to {
				n.links[[2]string{from, to}].SetDropRate(p, seed+i)
				i++
			}
		}
	}
}

// Close closes every link.
func (n *Net) Close() error {
	var first error
	for _, l := range n.links {
		if err := l.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
