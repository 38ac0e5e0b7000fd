// Package spool keeps the bytes of one message for a later replay: in
// memory up to a per-message threshold and while a shared Budget allows,
// in a temporary file beyond. The chunks come back exactly as they were
// written, boundaries included.
//
// A spool file is created with mode 0600 in the configured directory and
// unlinked at once where the system allows it (on Unix nothing is left on
// disk even if the process dies); otherwise it is removed by Reset. Reset
// (at the end of every message, on abort, on session close) also hands the
// memory back: a Spool keeps no capacity between messages.
//
// Tunables and defaults (Config):
//
//	Memory  bytes of one message kept in memory; <= 0: none (file only)
//	Dir     directory of spool files; "": os.TempDir()
//	Budget  shared limit on the bytes kept in memory by all spools; nil: none
package spool
