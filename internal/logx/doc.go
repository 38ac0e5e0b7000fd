// Package logx holds log/slog helpers shared by the daemons.
//
// Lazy wraps a handler so that Logger.With costs no formatting: pmult
// derives several loggers for every MTA session (the session, each
// backend, the queue id), and most of them never write a line. The
// attributes are handed to the wrapped handler the first time a record
// is written through the derived logger, once.
package logx
