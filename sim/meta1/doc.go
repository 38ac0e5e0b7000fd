// Package meta1sim plays MeTA1's smtps against a policy milter (pmult's
// MeTA1 front end) over the project's MODELLED pmilter protocol (see
// adapters/meta1/codec.go and docs/meta1.md: provisional, unverified
// against MeTA1): negotiation, many SMTP sessions multiplexed on one
// connection, smtps's policy_milter timeout with the abort and
// accept_but_reconnect flags, and smtps's side of the modifications.
// Backend (backend.go) is the same client as a pmult.Backend, so that
// mtasim's SMTP-script front drives it (`mtasim --pmilter`, and
// cmd/pmilter-sim, a thin alias); RunScript (script.go) is a minimal
// runner of its own, kept for library use. It is a test and measurement
// tool, not an MTA.
package meta1sim
