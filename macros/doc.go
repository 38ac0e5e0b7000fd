// Package macros holds macro names and tables shared by the front ends:
// the `{name}` versus `name` forms, the per-stage default macro lists of
// Sendmail and Postfix (milter-protocol.md §5), and the union of lists
// that an MTA must be configured with for a set of backends. It imports
// only the standard library.
package macros
