// Package callout is sender address verification as a service: the
// calloutd line protocol of mailfromd (Server and Client), and the Verifier
// that stands between the protocol and the SMTP prober (package
// callout/smtpprobe): the result cache (package callout/cache), in-flight
// deduplication, per-domain concurrency and rate limits, a global cap on
// pending probes, catch-all detection, background completion of probes
// that timed out (with the hard timeouts), and statistics.
//
// The protocol is the one of mailfromd 8.15's calloutd, reply for reply
// (greeting "OK mailfromd callout server ready", "NO text" errors,
// "* ID STAGE text" progress lines before RUN's "OK id=result ..."), so
// that mailfromd and other existing clients can use Server; see
// protocol.go for the commands and the few deliberate extensions.
//
// Layout: protocol.go (line parsing and formatting, fuzzed), server.go,
// client.go, verifier.go (cache, limits, dedup), limits.go, background.go,
// stats.go. No package-level state; everything is configured through
// exported struct fields, as net/http.Server is.
package callout
