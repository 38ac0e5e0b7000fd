// Package milter is the front end for Postfix and Sendmail: a permissive
// milter server session (it accepts Postfix's HELO-then-ABORT, repeated
// ABORTs, macros before every header and body chunk, empty macro packets,
// UNKNOWN, QUIT_NC, MTAs speaking versions 2 to 6) that turns packets into
// pmult events and merged replies into packets, negotiating toward the MTA
// by the rules of milter-protocol.md §10. It may import milterproto and
// pmult only.
package milter
