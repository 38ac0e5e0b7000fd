// Package connserve runs the listeners of a front end (the milter and the
// MeTA1 adapters): the accept loop with a backoff on transient errors, a
// limit on open connections, connection tracking, and a graceful shutdown
// that lets open connections finish until a deadline. It knows nothing of
// protocols: each connection is a Conn the front end implements.
package connserve
