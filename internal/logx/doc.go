// Package logx holds log/slog helpers shared by the daemons.
//
// NewText is pmult's handler: byte for byte the lines of
// slog.NewTextHandler (checked against it by a differential test and a
// fuzz target), with the records pmult writes (string, number, bool and
// duration attributes) formatted by its own code, whose quoting of
// printable ASCII is a copy rather than a rune-by-rune escape: pmult's
// decision line, one per message, carries several hundred bytes of
// quoted values. Anything else goes to a slog.TextHandler under the same
// lock.
//
// Lazy wraps a handler so that Logger.With costs no formatting: pmult
// derives several loggers for every MTA session (the session, each
// backend, the queue id), and most of them never write a line. The
// attributes are handed to the wrapped handler the first time a record
// is written through the derived logger, once. NewText does the same
// itself.
//
// Batch is the writer under pmult's handler: under load it writes many
// lines in one write(2), a line held at most a set delay, and NewText
// flushes it after every warning and error.
package logx
