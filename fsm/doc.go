// Package fsm is Conclave's replicated state machine: pure, deterministic state that every
// node builds by applying the same raft log in the same order.
//
// Rules this package keeps (DESIGN §3):
//   - Time comes only from a command's now_unix_nano; the machine's clock is
//     max(clock, now) so it never runs backwards. Revisions and ids come from the raft index.
//   - No randomness, goroutines, I/O or wall-clock reads; no map iteration reaches a result,
//     a snapshot byte or an event. Ordered state lives in B-trees with a total order.
//   - A command that cannot be decoded panics; a domain failure is a typed *Error and
//     changes nothing.
//   - Every index handed to the machine, including raft configuration entries, is recorded
//     as the applied index.
//
// The package must not import raft, grpc or anything that talks to the world; cluster/
// adapts it to raft.BatchingFSM and server/ maps its errors to gRPC codes.
package fsm
