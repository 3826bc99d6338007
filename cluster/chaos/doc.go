// Package chaos holds fault injection and linearizability checking for Conclave's tests
// and chaos runs; it is never imported by the server.
//
// It has two independent parts:
//
//   - Link and Net: a controllable TCP proxy for each directed raft link, so a test or a
//     chaos harness can cut, heal, delay and drop traffic between chosen nodes. A node
//     dials each peer's raft address through Net.Addr(from, to); cutting both directions
//     between two nodes partitions them.
//   - Recorder, Input, Output, RegisterModel, CounterModel, LockModel, RateLimitModel,
//     Check and CheckStaleReads: histories of client operations recorded with call and
//     return times (and unknown outcomes for timeouts, modelled as may-have-happened),
//     checked with porcupine against per-key models of the KV API, per-name models of
//     try-once EXCLUSIVE locks with fencing tokens, and per-key models of FIXED_WINDOW
//     rate limiters within one window.
//
// Nothing here may import the server, cluster or fsm packages: the checker judges the
// system only by what clients saw.
package chaos
