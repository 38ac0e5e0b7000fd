// Package mtasim is an MTA simulator for testing and measuring milters: the
// library behind cmd/mtasim.
//
// It is split in two halves so that other back ends can share the front:
//
//   - the SMTP-script front (script.go, session.go): reads SMTP commands
//     and mtasim's administrative commands (\D \U \L \S \E \W \#) line by
//     line, keeps the SMTP state, and answers like an MTA (texts of
//     mailfromd's mtasim where it has them);
//   - the filter back (filter.go): the events of each stage with Postfix's
//     default macro lists (or the filter's own), verdicts applied as
//     Sendmail applies them, ABORT where an MTA sends one. The filter is any
//     pmult.Backend: a milter (backends/milter, negotiating v6 with
//     fallback to v2..v5) wired by Port.Backend (port.go), or MeTA1's
//     smtps talking to a policy milter (sim/meta1's Backend, wired by
//     cmd/mtasim --pmilter).
//
// On top of the session sit the runners: stdio (RunScript, run.go),
// daemon (Server, daemon.go), batched SMTP with Exim -bS semantics and
// stored messages (RunBatch, RunMailFile, batch.go), and the load
// generator (RunLoad, load.go). Messages are kept as a header list and a
// body (message.go) so that the milter's edits can be applied (with
// pmult.HeaderList's rules, as Sendmail applies them), diffed and printed.
//
// The package may import milterproto, pmult, macros, backends/milter,
// internal/milterkind and config/syntax (address and duration syntax). It
// keeps no global state.
package mtasim
