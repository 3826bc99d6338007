package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"

	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/conclave-dev/conclave/proto/conclave/fsm/v1"
	conclavev1 "github.com/conclave-dev/conclave/proto/conclave/v1"
)

// Snapshot format, version 1:
//
//	magic "CNCLSNAP" | uint32 big-endian format version
//	uvarint length | SnapshotMeta
//	(uvarint length | SnapshotRecord)*   entries by key, members by id, sessions by id,
//	                                     locks by name, rate-limit policies by name,
//	                                     limiters by key, dedup by age; an Entry holding
//	                                     a sorted set is followed by its ZsetMembers
//	uvarint 0 | uint32 big-endian CRC-32C of every byte before it
//
// Records are marshalled deterministically, so equal states give equal bytes.
const (
	snapshotMagic   = "CNCLSNAP"
	snapshotVersion = 1
	maxRecordSize   = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot is returned by Restore for a snapshot it cannot trust.
var ErrBadSnapshot = errors.New("fsm: bad snapshot")

// Snapshot is a point-in-time copy of the machine, cheap to take (copy-on-write) and safe
// to persist while the machine goes on applying.
type Snapshot struct {
	st   *state
	meta *fsmv1.SnapshotMeta
}

// Snapshot captures the current state. It holds the machine's lock only to clone.
func (m *Machine) Snapshot() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &Snapshot{
		st: m.st.clone(),
		meta: &fsmv1.SnapshotMeta{
			FormatVersion:   snapshotVersion,
			AppliedIndex:    m.applied.Load(),
			ClockUnixNano:   m.clock,
			LeaderStartTerm: m.leader,
		},
	}
}

// AppliedIndex is the raft index the snapshot covers.
func (s *Snapshot) AppliedIndex() uint64 { return s.meta.GetAppliedIndex() }

// WriteTo streams the snapshot in the format above.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	sw := &snapWriter{w: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(castagnoli)}
	sw.raw([]byte(snapshotMagic))
	sw.raw(binary.BigEndian.AppendUint32(nil, snapshotVersion))
	sw.record(s.meta)
	s.st.entries.Scan(func(e *entry) bool {
		rec := &fsmv1.Entry{
			Key: []byte(e.key), Value: e.value, CreateRevision: e.createRev, ModRevision: e.modRev,
			Version: e.version, ExpiresAtUnixNano: e.expiresAt, SessionId: e.session,
		}
		if e.zset != nil {
			rec.SortedSet = &fsmv1.ZsetHeader{TieBreak: e.zset.tie, Seq: e.zset.seq, Members: int64(e.zset.z.Len())}
		}
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Entry{Entry: rec}})
		if e.zset != nil {
			sw.zsetMembers(e.zset.z)
		}
		return sw.err == nil
	})
	s.st.members.Scan(func(m *fsmv1.Member) bool {
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Member{Member: m}})
		return sw.err == nil
	})
	s.st.sessions.Scan(func(ss *session) bool {
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Session{Session: ss.proto()}})
		return sw.err == nil
	})
	s.st.locks.Scan(func(l *lockState) bool {
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Lock{Lock: l.proto()}})
		return sw.err == nil
	})
	s.st.policies.Scan(func(p *conclavev1.RateLimitPolicy) bool {
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Policy{Policy: p}})
		return sw.err == nil
	})
	s.st.limiters.Scan(func(l *limiter) bool {
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Limiter{Limiter: l.proto()}})
		return sw.err == nil
	})
	s.st.dedupAges.Scan(func(a dedupAge) bool {
		rec, _ := s.st.dedup.Get(&dedupRecord{id: a.id})
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Dedup{Dedup: &fsmv1.DedupRecord{
			RequestId: rec.id, AtUnixNano: rec.at, Result: rec.result,
		}}})
		return sw.err == nil
	})
	sw.raw(binary.AppendUvarint(nil, 0))
	if sw.err == nil {
		_, sw.err = sw.w.Write(binary.BigEndian.AppendUint32(nil, sw.crc.Sum32()))
		sw.n += 4
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return sw.n, sw.err
}

// zsetMembersPerRecord is the run length of ZsetMembers records.
const zsetMembersPerRecord = 1024

// zsetMembers writes a sorted set's members in rank order, in runs.
func (sw *snapWriter) zsetMembers(z *zset) {
	run := &fsmv1.ZsetMembers{}
	flush := func() {
		sw.record(&fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_ZsetMembers{ZsetMembers: run}})
		run.Members = run.Members[:0]
	}
	z.byRank.ascend(0, func(e zsetEntry) bool {
		run.Members = append(run.Members, &fsmv1.ZsetMember{Member: e.member, Score: e.score, Tie: e.tie})
		if len(run.Members) == zsetMembersPerRecord {
			flush()
		}
		return sw.err == nil
	})
	if len(run.Members) > 0 {
		flush()
	}
}

type snapWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	buf []byte
	err error
}

func (sw *snapWriter) raw(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc.Write(b)
	var n int
	n, sw.err = sw.w.Write(b)
	sw.n += int64(n)
}

func (sw *snapWriter) record(msg proto.Message) {
	if sw.err != nil {
		return
	}
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(sw.buf[:0], msg)
	if err != nil {
		sw.err = err
		return
	}
	sw.buf = b
	sw.raw(binary.AppendUvarint(nil, uint64(len(b))))
	sw.raw(b)
}

// Restore replaces the machine's state with the snapshot read from r. It builds the new
// state (and its derived indexes) aside and swaps it in only once the whole snapshot
// has been read and its checksum verified.
func (m *Machine) Restore(r io.Reader) error {
	st, meta, err := readSnapshot(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	m.clock = meta.GetClockUnixNano()
	m.leader = meta.GetLeaderStartTerm()
	m.applied.Store(meta.GetAppliedIndex())
	return nil
}

func readSnapshot(r io.Reader) (*state, *fsmv1.SnapshotMeta, error) {
	br := &crcReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(castagnoli)}
	head := make([]byte, len(snapshotMagic)+4)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if !bytes.Equal(head[:len(snapshotMagic)], []byte(snapshotMagic)) {
		return nil, nil, fmt.Errorf("%w: not a conclave snapshot", ErrBadSnapshot)
	}
	if v := binary.BigEndian.Uint32(head[len(snapshotMagic):]); v != snapshotVersion {
		return nil, nil, fmt.Errorf("%w: format version %d, want %d", ErrBadSnapshot, v, snapshotVersion)
	}
	meta := &fsmv1.SnapshotMeta{}
	if err := readRecord(br, meta); errors.Is(err, errEndOfRecords) {
		return nil, nil, fmt.Errorf("%w: no meta record", ErrBadSnapshot)
	} else if err != nil {
		return nil, nil, err
	}
	st := newState()
	zr := zsetRestore{st: st}
	for {
		rec := &fsmv1.SnapshotRecord{}
		if err := readRecord(br, rec); errors.Is(err, errEndOfRecords) {
			break
		} else if err != nil {
			return nil, nil, err
		}
		if _, ok := rec.GetRecord().(*fsmv1.SnapshotRecord_ZsetMembers); !ok && zr.left != 0 {
			return nil, nil, fmt.Errorf("%w: sorted set %q is missing %d members", ErrBadSnapshot, zr.key, zr.left)
		}
		switch x := rec.GetRecord().(type) {
		case *fsmv1.SnapshotRecord_Entry:
			e := x.Entry
			ent := &entry{key: string(e.GetKey()), value: e.GetValue(), createRev: e.GetCreateRevision(),
				modRev: e.GetModRevision(), version: e.GetVersion(), expiresAt: e.GetExpiresAtUnixNano(), session: e.GetSessionId()}
			if h := e.GetSortedSet(); h != nil {
				if err := zr.start(ent, h); err != nil {
					return nil, nil, err
				}
			}
			st.put(ent)
		case *fsmv1.SnapshotRecord_ZsetMembers:
			if err := zr.add(x.ZsetMembers); err != nil {
				return nil, nil, err
			}
		case *fsmv1.SnapshotRecord_Session:
			st.addSession(sessionFromProto(x.Session))
		case *fsmv1.SnapshotRecord_Lock:
			r := x.Lock
			st.putLock(&lockState{name: r.GetName(), limit: r.GetLimit(), holders: r.GetHolders(), waiters: r.GetWaiters(), delayUntil: r.GetDelayUntilUnixNano()})
		case *fsmv1.SnapshotRecord_Policy:
			if x.Policy.GetName() == "" || ValidatePolicy(x.Policy) != nil {
				return nil, nil, fmt.Errorf("%w: invalid rate-limit policy %q", ErrBadSnapshot, x.Policy.GetName())
			}
			st.policies.Set(x.Policy)
		case *fsmv1.SnapshotRecord_Limiter:
			l, ok := st.limiterFromProto(x.Limiter)
			if !ok {
				return nil, nil, fmt.Errorf("%w: invalid limiter %q", ErrBadSnapshot, x.Limiter.GetKey())
			}
			st.putLimiter(l.key, l, math.MinInt64) // stored as it was, idle or not
		case *fsmv1.SnapshotRecord_Member:
			st.members.Set(x.Member)
		case *fsmv1.SnapshotRecord_Dedup:
			d := x.Dedup
			st.dedup.Set(&dedupRecord{id: d.GetRequestId(), at: d.GetAtUnixNano(), result: d.GetResult()})
			st.dedupAges.Set(dedupAge{at: d.GetAtUnixNano(), id: d.GetRequestId()})
		default:
			return nil, nil, fmt.Errorf("%w: unknown record %T", ErrBadSnapshot, x)
		}
	}
	if zr.left != 0 {
		return nil, nil, fmt.Errorf("%w: sorted set %q is missing %d members", ErrBadSnapshot, zr.key, zr.left)
	}
	want := br.crc.Sum32() // everything before the trailer
	var trailer [4]byte
	if _, err := io.ReadFull(br.r, trailer[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: checksum: %v", ErrBadSnapshot, err)
	}
	if got := binary.BigEndian.Uint32(trailer[:]); got != want {
		return nil, nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrBadSnapshot, got, want)
	}
	return st, meta, nil
}

// zsetRestore fills the sorted set of the last Entry record from the ZsetMembers
// records that follow it.
type zsetRestore struct {
	st   *state
	key  string
	ss   *sortedSet
	left int64 // members still to come
}

func (zr *zsetRestore) start(e *entry, h *fsmv1.ZsetHeader) error {
	tie := h.GetTieBreak()
	if h.GetMembers() <= 0 || tie < conclavev1.TieBreak_TIE_BREAK_LEX || tie > conclavev1.TieBreak_TIE_BREAK_ARRIVAL_ASCENDING || len(e.value) != 0 {
		return fmt.Errorf("%w: invalid sorted set header for %q", ErrBadSnapshot, e.key)
	}
	zr.key, zr.left = e.key, h.GetMembers()
	zr.ss = &sortedSet{z: newZset(), tie: tie, seq: h.GetSeq(), gen: zr.st.gen}
	e.zset = zr.ss
	return nil
}

func (zr *zsetRestore) add(run *fsmv1.ZsetMembers) error {
	if int64(len(run.GetMembers())) > zr.left {
		return fmt.Errorf("%w: sorted-set members without a sorted set", ErrBadSnapshot)
	}
	for _, m := range run.GetMembers() {
		if math.IsNaN(m.GetScore()) {
			return fmt.Errorf("%w: sorted set %q: member %q has a NaN score", ErrBadSnapshot, zr.key, m.GetMember())
		}
		if _, existed := zr.ss.z.Add(m.GetMember(), m.GetScore(), m.GetTie()); existed {
			return fmt.Errorf("%w: sorted set %q: member %q twice", ErrBadSnapshot, zr.key, m.GetMember())
		}
	}
	zr.left -= int64(len(run.GetMembers()))
	return nil
}

// crcReader checksums exactly the bytes its caller consumes.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

var errEndOfRecords = errors.New("end of records")

func readRecord(br *crcReader, msg proto.Message) error {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("%w: record length: %v", ErrBadSnapshot, err)
	}
	if n == 0 {
		return errEndOfRecords
	}
	if n > maxRecordSize {
		return fmt.Errorf("%w: record of %d bytes", ErrBadSnapshot, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return fmt.Errorf("%w: record: %v", ErrBadSnapshot, err)
	}
	if err := proto.Unmarshal(b, msg); err != nil {
		return fmt.Errorf("%w: record: %v", ErrBadSnapshot, err)
	}
	return nil
}
