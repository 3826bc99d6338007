package fsm_test

import (
	"strings"
	"testing"

	"github.com/conclave-dev/conclave/fsm"
)

func TestKV_TTL(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: set("plain", "v")},
		step{index: 2, now: t0, op: setTTL("ttl", "v", 1500)},
	)
	tests := []struct {
		name      string
		key       string
		at        int64
		wantTTL   int64
		wantFound bool
	}{
		{name: "missing key", key: "nope", at: t0, wantTTL: -2},
		{name: "no ttl", key: "plain", at: t0, wantTTL: -1, wantFound: true},
		{name: "full ttl", key: "ttl", at: t0, wantTTL: 1500, wantFound: true},
		{name: "rounded up by a nanosecond", key: "ttl", at: t0 + 1, wantTTL: 1500, wantFound: true},
		{name: "rounded up", key: "ttl", at: t0 + 500*ms + 1, wantTTL: 1000, wantFound: true},
		{name: "exact millisecond", key: "ttl", at: t0 + 500*ms, wantTTL: 1000, wantFound: true},
		{name: "last nanosecond", key: "ttl", at: t0 + 1500*ms - 1, wantTTL: 1, wantFound: true},
		{name: "at the deadline", key: "ttl", at: t0 + 1500*ms, wantTTL: -2},
		{name: "after the deadline, before ExpireDue", key: "ttl", at: t0 + 10*s, wantTTL: -2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m.Read(tc.at, func(v *fsm.View) {
				got, found := v.TTL([]byte(tc.key))
				if got != tc.wantTTL || found != tc.wantFound {
					t.Errorf("TTL(%q) = %d, %v; want %d, %v", tc.key, got, found, tc.wantTTL, tc.wantFound)
				}
				if kv, ok := v.Get([]byte(tc.key)); ok != tc.wantFound || (ok && kv.GetTtlMs() != max(tc.wantTTL, 0)) {
					t.Errorf("Get(%q) = %v, %v; want found=%v ttl_ms=%d", tc.key, kv, ok, tc.wantFound, max(tc.wantTTL, 0))
				}
			})
		})
	}
}

func TestKV_Scan(t *testing.T) {
	m := fsm.New()
	run(t, m,
		step{index: 1, now: t0, op: set("a", "va")},
		step{index: 2, now: t0, op: set("app/1", "v1")},
		step{index: 3, now: t0, op: set("app/2", "v2")},
		step{index: 4, now: t0, op: setTTL("app/2a", "expired", 100)},
		step{index: 5, now: t0, op: setTTL("app/3", "v3", 60_000)},
		step{index: 6, now: t0, op: setTTL("app/x", "expired", 100)},
		step{index: 7, now: t0, op: set("apq", "vq")},
		step{index: 8, now: t0, op: set("b", "vb")},
	)
	at := t0 + s
	tests := []struct {
		name     string
		prefix   string
		after    string
		limit    int
		keysOnly bool
		want     string // keys joined by spaces
		wantMore bool
	}{
		{name: "prefix skips expired keys", prefix: "app/", limit: 10, want: "app/1 app/2 app/3"},
		{name: "everything", limit: 100, want: "a app/1 app/2 app/3 apq b"},
		{name: "first page", prefix: "app/", limit: 2, want: "app/1 app/2", wantMore: true},
		{name: "next page", prefix: "app/", after: "app/2", limit: 2, want: "app/3"},
		{name: "a full last page whose only follower expired has no more", prefix: "app/", limit: 3, want: "app/1 app/2 app/3"},
		{name: "after a key that does not exist", prefix: "app/", after: "app/15", limit: 10, want: "app/2 app/3"},
		{name: "after past the prefix", prefix: "app/", after: "b", limit: 10, want: ""},
		{name: "after before the prefix", prefix: "app/", after: "a", limit: 10, want: "app/1 app/2 app/3"},
		{name: "after the last key", after: "b", limit: 10, want: ""},
		{name: "no match", prefix: "zz", limit: 10, want: ""},
		{name: "prefix that is a key", prefix: "a", limit: 1, want: "a", wantMore: true},
		{name: "keys only", prefix: "ap", limit: 10, keysOnly: true, want: "app/1 app/2 app/3 apq"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m.Read(at, func(v *fsm.View) {
				kvs, more := v.Scan([]byte(tc.prefix), []byte(tc.after), tc.limit, tc.keysOnly)
				var keys []string
				for _, e := range kvs {
					keys = append(keys, string(e.GetKey()))
					if tc.keysOnly && e.GetValue() != nil {
						t.Errorf("keys-only scan returned value %q for %q", e.GetValue(), e.GetKey())
					}
					if !tc.keysOnly && len(e.GetValue()) == 0 {
						t.Errorf("scan returned no value for %q", e.GetKey())
					}
					if e.GetModRevision() == 0 || e.GetVersion() != 1 {
						t.Errorf("scan entry %v lacks its revision or version", e)
					}
				}
				if got := strings.Join(keys, " "); got != tc.want || more != tc.wantMore {
					t.Errorf("Scan(%q, after %q, %d) = %q, more=%v; want %q, more=%v",
						tc.prefix, tc.after, tc.limit, got, more, tc.want, tc.wantMore)
				}
			})
		})
	}

	t.Run("paging visits every live key once", func(t *testing.T) {
		var all []string
		var after []byte
		for page := 0; ; page++ {
			if page > 10 {
				t.Fatal("paging does not end")
			}
			var kvs []string
			var more bool
			m.Read(at, func(v *fsm.View) {
				res, mo := v.Scan(nil, after, 1, true)
				for _, e := range res {
					kvs = append(kvs, string(e.GetKey()))
				}
				more = mo
			})
			all = append(all, kvs...)
			if !more {
				break
			}
			after = []byte(kvs[len(kvs)-1])
		}
		if got, want := strings.Join(all, " "), "a app/1 app/2 app/3 apq b"; got != want {
			t.Errorf("paged keys = %q, want %q", got, want)
		}
	})

	t.Run("ttl_ms in scan results", func(t *testing.T) {
		m.Read(at, func(v *fsm.View) {
			kvs, _ := v.Scan([]byte("app/3"), nil, 1, false)
			if len(kvs) != 1 || kvs[0].GetTtlMs() != 59_000 {
				t.Errorf("Scan(app/3) = %v, want ttl_ms 59000", kvs)
			}
		})
	})
}
