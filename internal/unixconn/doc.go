// Package unixconn is a net.Conn for unix stream sockets that sleeps
// until input arrives, and is not woken when the peer reads.
//
// Go's network poller registers every socket for input and output
// readiness (edge-triggered). On a unix stream socket the kernel signals
// output readiness each time the peer consumes data the process wrote
// (af_unix frees the buffer and wakes the writer's waiters), so a
// process that writes a command and then waits for the answer is woken
// once for the peer reading the command and again for its answer. For
// pmult, which writes each event to several filters and then waits,
// 29% of its sleeps through a real Postfix ended with output signals
// only (strace of epoll_pwait), each a context switch for nothing.
//
// Conn takes a socket out of Go's poller (New), or makes one
// directly (Dial), and registers it, for input only, in an epoll
// instance of its own, which is itself registered in Go's poller: a
// goroutine waiting to read sleeps on that instance, and the kernel
// filters the output signals out before anything is woken.
// A write that finds the socket's buffer full (rare: a large body to a
// slow filter) waits on a second instance registered for output, made
// at the first such write. Deadlines, Close during a wait, and errors
// behave as for the standard library's connections: a timeout is a
// net.Error with Timeout() true, a use after Close wraps net.ErrClosed.
//
// Every system call on the socket runs inside a callback of the epoll
// instances' os.File (RawConn), which holds a reference on it: Close
// waits for those to end before closing the socket, so no call can
// reach a descriptor number reused by then.
package unixconn
