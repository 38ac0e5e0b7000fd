// Package callout is the "callout" backend type: sender address
// verification (SAV) inside the multiplexer, with mailfromd's semantics.
// At MAIL it verifies the envelope sender, and with verify_recipients each
// recipient at RCPT (call-ahead to the next hop, for relays and backup
// MXes), in mailfromd's modes: standard (the sender domain's MX hosts by
// preference, then its A/AAAA), mxonly or hostonly/hostfirst with a host.
//
// Probes run in process with the embedded prober (callout/smtpprobe) and
// Verifier (package callout: cache, in-flight sharing, per-domain limits,
// background completion), or through a calloutd server (ours, or
// mailfromd's calloutd 8.15: the same protocol). The cache is a bbolt
// file by default, Redis when several hosts share it, or memory; under
// pmult its open store is the process's (ShareCaches), kept across
// reloads.
//
// Soft and hard timeouts are mailfromd's: the client waits at most the
// soft per-stage timeouts (and max_wait in all); when they expire it gets
// the timeout verdict (tempfail) and the address is probed again in the
// background under the hard timeouts, its answer cached for the retry.
//
// Each outcome (success, not_found, no_mail_host, temp_failure, failure,
// timeout) has a configurable verdict (verdict.go): continue, accept,
// reject or tempfail with a reply text, or tag (a header at end of
// message). Senders that must not be probed are skipped (skip.go).
//
// Layout: config.go (keys), backend.go (Backend, session), verdict.go,
// skip.go, checker.go (in process, calloutd), dial.go (the
// internal-address guard). Cache administration is callout/cache's Admin
// (pmult callout-cache, calloutd cache). README.md maps mailfromd's
// standard verification onto the keys.
package callout
