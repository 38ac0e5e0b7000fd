// Package meta1sim plays MeTA1's smtps against a policy milter (pmult's
// MeTA1 front end) over the project's MODELLED pmilter protocol (package
// adapters/meta1/pmilter and docs/meta1.md: provisional, unverified
// against MeTA1): negotiation, many SMTP sessions multiplexed on one
// connection, smtps's policy_milter timeout with the abort and
// accept_but_reconnect flags, and smtps's side of the modifications
// (message.go). Client (client.go) is smtps's connection; Backend
// (backend.go) is the same client as a pmult.Backend, so that mtasim's
// SMTP-script front drives it (`mtasim --pmilter`, package sim/mta). It is
// a test and measurement tool, not an MTA.
//
// It imports adapters/meta1/pmilter (the codec, not the front end),
// macros and pmult. It keeps no global state.
package meta1sim
