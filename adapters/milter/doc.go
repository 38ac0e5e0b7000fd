// Package milter is the front end for Postfix and Sendmail: a milter
// server session that turns packets into pmult events and merged replies
// into packets, negotiating toward the MTA by the rules of
// milter-protocol.md §10.
//
// It enforces the MTA-side order of commands (state.go: libmilter's
// transition table, permissive where Postfix and Sendmail differ from it:
// HELO-then-ABORT, repeated ABORTs, macros before every header and body
// chunk, empty macro packets, UNKNOWN anywhere before the content, no DATA
// from old versions, QUIT_NC then CONNECT, MTAs speaking versions 2 to 6);
// a command out of order closes the connection with one log line. Macro
// packets keep the last set per command letter, at most one packet's size
// in all. During the end of message it sends SMFIR_PROGRESS every
// ProgressInterval so that the MTA's timer does not cover every backend
// at once, and watches the MTA's socket: when the MTA goes away the
// session's context is cancelled and the backends stop waiting.
//
// It imports milterproto, pmult, macros (the MTAs' default macro lists),
// internal/connserve (the accept loop) and internal/sockopt.
package milter
