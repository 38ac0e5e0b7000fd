// Package sockopt holds socket tweaks shared by the milter front end and
// the backend client. QuickAck sends a pending delayed ACK at once (Linux
// TCP_QUICKACK): a peer that writes two packets in two segments without
// TCP_NODELAY (libmilter's modification then final reply; Sendmail's macro
// packet then its command) otherwise waits ~40 ms for our delayed ACK
// before Nagle lets its second segment go.
//
// Not here, on purpose: a "wait first" read (after a write, skip the
// read(2) that returns EAGAIN and park on the netpoller at once, through
// syscall.RawConn.Read with a function that returns false on its first
// call). It is wrong with Go's netpoller: RawConn.Read (internal/poll
// FD.RawRead) first calls prepareRead, which resets the descriptor's
// ready mark (runtime pollReset); a reply that arrived before the call
// has had its one edge-triggered event already, so the wait then sleeps
// until the read deadline although the reply is in the socket. Through
// Postfix with 3 pymilter backends the prototype timed out reading
// backends' OPTNEG and CONNECT replies (10 s read_timeout) and Postfix
// tempfailed the sessions. Doing the write inside the read function
// (after the reset) would be correct, but only where one goroutine
// writes a command that owes a reply and reads it at once, not for the
// Post/Await fan-out nor for commands without a reply. And the
// gain is small: 14 such reads per message (strace: reads with errors,
// of ~108 system calls in pmult, reuse on), ~0.18 µs each, about 2.5 µs
// of pmult's ~0.9 ms per message.
package sockopt
