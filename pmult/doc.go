// Package pmult is the engine of the multiplexer: the event and reply types
// of the common event stream, and a Session that fans each event of one MTA
// session out to N backend sessions, merges their verdicts (strongest wins,
// or with Engine.ChainMerge the first objection in configured order;
// per-recipient rejects; ACCEPT means "this backend is done") and their
// message edits (one header model with the MTA's semantics, built on the
// exported HeaderList that the front ends and mtasim share; all body
// replacement in one run), and applies each backend's failure policy. The
// content phase is serial by default: the first editor (and read-only
// backends before it) see the message live, later backends get it replayed
// at end of message as edited so far, in configured order, as in the MTA's
// own milter chain.
//
// The engine knows nothing of sockets, codecs or MTAs: front ends
// (adapters/…) turn an MTA's dialect into Events and Replies back into its
// dialect; backends (backends/…) implement the Backend interface. A
// BackendSession needs three methods (Caps, Handle, Close); one that can
// deliver an event and read the answer later implements Pipeliner too and
// is driven without goroutines, the others run concurrently, one goroutine
// per backend and event. Func makes a Backend of a function; package
// pmulttest has a scriptable Backend and a Harness for tests.
//
// Before fan-out, each event's macros go through the configured macro
// tables (Engine.Macros, macrotable.go) and the macros the engine can
// derive are added for the backends that ask for them (MacroSet.Synth).
// A backend can set macros for the backends after it in the chain
// (Reply.Macros, assign.go): each of those gets its own copy of a later
// event with them in its stage's set.
//
// The package imports macros (names, tables) and internal/spool only.
package pmult
