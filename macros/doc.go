// Package macros holds macro names and tables shared by the front ends
// and the simulators: the `{name}` versus `name` forms, the per-stage
// default macro lists of Sendmail and Postfix (milter-protocol.md §5), the
// union of lists that an MTA must be configured with for a set of
// backends, the MeTA1 macros by name and those the multiplexer synthesises
// for MeTA1 (meta1.go), the translation tables (table.go: rename, alias,
// default, set, drop; the built-in dialect tables; the names pmult can
// derive), and StripBrackets, the one angle-bracket stripper of SMTP
// paths. It imports only the standard library.
package macros
