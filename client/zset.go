package client

import (
	"context"
	"fmt"
	"time"

	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// dayLayout is the date a Daily board appends to its key.
const dayLayout = "2006-01-02"

// Entry is one member of a Leaderboard with its score and rank.
type Entry struct {
	// Member is the player: the sorted set's member.
	Member string
	// Score is the member's score.
	Score float64
	// Rank is 0-based and counts from the best (0 leads the board), with ties counted as
	// the board's rank mode says (WithRankMode). Show Rank+1 to people.
	Rank int64
}

// entryOf converts a ranked member of a response.
func entryOf(m *conclavev1.RankedMember) Entry {
	return Entry{Member: m.GetMember(), Score: m.GetScore(), Rank: m.GetRank()}
}

// entriesOf converts the ranked members of a response.
func entriesOf(ms []*conclavev1.RankedMember) []Entry {
	if len(ms) == 0 {
		return nil
	}
	out := make([]Entry, len(ms))
	for i, m := range ms {
		out[i] = entryOf(m)
	}
	return out
}

// LeaderboardOption changes a Leaderboard.
type LeaderboardOption func(*Leaderboard)

// LowestFirst makes a board on which the lowest score is the best (a race time, a golf
// score): Top and Around list the lowest first, ranks count from the lowest, and Submit
// keeps a member's lowest score.
func LowestFirst() LeaderboardOption { return func(b *Leaderboard) { b.lowest = true } }

// WithTieBreak orders equal scores by t instead of by arrival. The tie-break is fixed by
// the write that creates the board's sorted set; an existing set keeps its own. By
// default the member that reached a score first ranks ahead of those that reached it
// later (TIE_BREAK_ARRIVAL, or TIE_BREAK_ARRIVAL_ASCENDING on a LowestFirst board);
// TIE_BREAK_LEX orders ties by member, as Redis does.
func WithTieBreak(t conclavev1.TieBreak) LeaderboardOption {
	return func(b *Leaderboard) { b.tie = t }
}

// WithRankMode says how the ranks the board returns count ties. For scores 9, 7, 7, 5:
// ordinal by default (0, 1, 2, 3: ties ordered by the tie-break), dense (0, 1, 1, 2) or
// competition (0, 1, 1, 3).
func WithRankMode(m conclavev1.RankMode) LeaderboardOption {
	return func(b *Leaderboard) { b.mode = m }
}

// StaleReads makes Top, Around, RankOf and Len read the serving node's local state,
// which may lag the cluster by a little, instead of a linearizable read: cheaper for a
// board shown to many viewers.
func StaleReads() LeaderboardOption {
	return func(b *Leaderboard) { b.consistency = conclavev1.Consistency_CONSISTENCY_STALE }
}

// ExpireAfter gives the board a time to live, set by the write that creates its sorted
// set (rounded up to a whole millisecond); later writes keep it. When it runs out, the
// board is deleted and the next write starts a new one. Daily replaces it.
func ExpireAfter(d time.Duration) LeaderboardOption {
	return func(b *Leaderboard) { b.ttl, b.daily = d, false }
}

// Daily makes the board one sorted set per calendar day in loc (nil: UTC), stored at
// "KEY:YYYY-MM-DD" for the day, by the client's clock, of each call: every day starts
// an empty board. A day's set is created with a time to live that ends keep after the
// day does, so that the board of a past day can still be read (At) for keep, and is then
// deleted by the cluster.
func Daily(loc *time.Location, keep time.Duration) LeaderboardOption {
	if loc == nil {
		loc = time.UTC
	}
	return func(b *Leaderboard) { b.daily, b.loc, b.keep, b.ttl = true, loc, keep, 0 }
}

// Leaderboard is a sorted set used as a high-score table, through the client's
// SortedSetService: players are members, scores are float64, the best is first. Every
// write is a replicated write carrying a request id, so a retry after a failover is
// applied once; reads are linearizable unless StaleReads. A Leaderboard holds no state
// of its own: it is safe for concurrent use, and cheap to create.
type Leaderboard struct {
	c           *Client
	key         string
	lowest      bool
	tie         conclavev1.TieBreak
	mode        conclavev1.RankMode
	consistency conclavev1.Consistency
	ttl         time.Duration    // ExpireAfter; 0: none
	daily       bool             // one set per day of loc
	loc         *time.Location   // the days' time zone when daily
	keep        time.Duration    // how long a day's set outlives the day
	day         time.Time        // a Daily board pinned by At; zero: the day of each call
	now         func() time.Time // the clock that picks the day and its TTL
}

// Leaderboard returns the leaderboard stored at key (by default highest score first).
func (c *Client) Leaderboard(key string, opts ...LeaderboardOption) *Leaderboard {
	b := &Leaderboard{c: c, key: key, loc: time.UTC, now: time.Now}
	for _, o := range opts {
		o(b)
	}
	if b.tie == conclavev1.TieBreak_TIE_BREAK_UNSPECIFIED {
		b.tie = conclavev1.TieBreak_TIE_BREAK_ARRIVAL
		if b.lowest {
			b.tie = conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING
		}
	}
	return b
}

// At returns the board of the day holding t, for a Daily board (for instance yesterday's,
// to read its winners); any other board is returned as is.
func (b *Leaderboard) At(t time.Time) *Leaderboard {
	if !b.daily {
		return b
	}
	pinned := *b
	y, m, d := t.In(b.loc).Date()
	pinned.day = time.Date(y, m, d, 0, 0, 0, 0, b.loc)
	return &pinned
}

// Key returns the key of the sorted set the next call uses: the board's key, followed by
// ":YYYY-MM-DD" for a Daily board.
func (b *Leaderboard) Key() string {
	if !b.daily {
		return b.key
	}
	return b.key + ":" + b.today().Format(dayLayout)
}

// today returns the start of the day a Daily board's call uses.
func (b *Leaderboard) today() time.Time {
	if !b.day.IsZero() {
		return b.day
	}
	y, m, d := b.now().In(b.loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, b.loc)
}

// target returns the key of a write and the TTL it gives a set it creates, in
// milliseconds (0: none). A write to a past day whose board has already expired fails.
func (b *Leaderboard) target() (key []byte, ttlMs int64, err error) {
	if !b.daily {
		return []byte(b.key), durationMs(b.ttl), nil
	}
	day := b.today()
	end := time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, b.loc).Add(b.keep)
	left := end.Sub(b.now())
	if left <= 0 {
		return nil, 0, fmt.Errorf("client: leaderboard %q: the board of %s expired at %s", b.key, day.Format(dayLayout), end.Format(time.RFC3339))
	}
	return []byte(b.key + ":" + day.Format(dayLayout)), durationMs(left), nil
}

// Submit records score as member's when it is the member's best: when member is new on
// the board, or score beats its current one (greater; smaller on a LowestFirst board).
// It reports whether the score was recorded. A score equal to the member's current one
// changes nothing, so the member keeps the place its first arrival at that score earned.
// It is one Add with only_greater (only_less on a LowestFirst board), so the comparison
// and the write are one atomic step: concurrent submissions keep the best of them.
func (b *Leaderboard) Submit(ctx context.Context, member string, score float64) (bool, error) {
	key, ttl, err := b.target()
	if err != nil {
		return false, err
	}
	resp, err := b.c.zsets.Add(ctx, &conclavev1.AddRequest{
		Key:         key,
		Members:     []*conclavev1.ScoredMember{{Member: member, Score: score}},
		OnlyGreater: !b.lowest,
		OnlyLess:    b.lowest,
		TieBreak:    b.tie,
		TtlMs:       ttl,
	})
	if err != nil {
		return false, err
	}
	return resp.GetChanged() > 0, nil
}

// Increment adds delta (which may be negative) to member's score, a new member starting
// at 0, and returns the new score: points won rather than a score reached. A retry after
// a failover adds once.
func (b *Leaderboard) Increment(ctx context.Context, member string, delta float64) (float64, error) {
	key, ttl, err := b.target()
	if err != nil {
		return 0, err
	}
	resp, err := b.c.zsets.IncrementScore(ctx, &conclavev1.IncrementScoreRequest{
		Key: key, Member: member, Delta: delta, TieBreak: b.tie, TtlMs: ttl,
	})
	if err != nil {
		return 0, err
	}
	return resp.GetScore(), nil
}

// Remove takes members off the board and returns how many were on it.
func (b *Leaderboard) Remove(ctx context.Context, members ...string) (int64, error) {
	if len(members) == 0 {
		return 0, nil
	}
	resp, err := b.c.zsets.Remove(ctx, &conclavev1.SortedSetServiceRemoveRequest{Key: []byte(b.Key()), Members: members})
	if err != nil {
		return 0, err
	}
	return resp.GetRemoved(), nil
}

// Len returns the number of members on the board.
func (b *Leaderboard) Len(ctx context.Context) (int64, error) {
	resp, err := b.c.zsets.Cardinality(ctx, &conclavev1.CardinalityRequest{Key: []byte(b.Key()), Consistency: b.consistency})
	if err != nil {
		return 0, err
	}
	return resp.GetCount(), nil
}

// Top returns the n best members, best first, with their ranks; fewer when the board has
// fewer. n 0 means 10; n is at most 10,000.
func (b *Leaderboard) Top(ctx context.Context, n int) ([]Entry, error) {
	resp, err := b.c.zsets.Top(ctx, &conclavev1.TopRequest{
		Key: []byte(b.Key()), Count: int64(n), Lowest: b.lowest, RankMode: b.mode, Consistency: b.consistency,
	})
	if err != nil {
		return nil, err
	}
	return entriesOf(resp.GetMembers()), nil
}

// Around returns member with up to n neighbours on each side, best first, with their
// ranks: the slice of the board a player sees around themselves. It returns nil when
// member is not on the board. n is at most 1,000.
func (b *Leaderboard) Around(ctx context.Context, member string, n int) ([]Entry, error) {
	resp, err := b.c.zsets.Around(ctx, &conclavev1.AroundRequest{
		Key: []byte(b.Key()), Member: member, Count: int64(n), Reverse: !b.lowest, RankMode: b.mode, Consistency: b.consistency,
	})
	if err != nil || !resp.GetFound() {
		return nil, err
	}
	return entriesOf(resp.GetMembers()), nil
}

// RankOf returns member's entry: its score and rank. found is false when member is not
// on the board.
func (b *Leaderboard) RankOf(ctx context.Context, member string) (e Entry, found bool, err error) {
	resp, err := b.c.zsets.Rank(ctx, &conclavev1.RankRequest{
		Key: []byte(b.Key()), Member: member, Reverse: !b.lowest, Mode: b.mode, Consistency: b.consistency,
	})
	if err != nil || !resp.GetFound() {
		return Entry{Member: member}, false, err
	}
	return Entry{Member: member, Score: resp.GetScore(), Rank: resp.GetRank()}, true, nil
}
