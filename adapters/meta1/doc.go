// Package meta1 is the front end for MeTA1's smtps, which speaks the
// policy-milter ("pmilter") protocol instead of Sendmail's milter: smtps
// connects, negotiates once per connection, then carries many SMTP sessions
// on it, each record tagged with its session id. The package maps the
// pmilter stages (connect, ehlo, mail, rcpt, data with raw message chunks,
// dot, abort, close) to pmult events, splitting the one data stage into
// header, end-of-headers and body events; it synthesises the macros
// mailfromd's pmult provides and translates MeTA1's integer macro ids; and
// it maps merged replies and edits back to pmilter reply codes, recipient
// and header modifications and message replacement.
//
// The byte-level codec (package adapters/meta1/pmilter, one file) is a
// PROVISIONAL MODEL: MeTA1's wire format was not available, so every
// byte-level decision sits in one table in that file, unverified against
// MeTA1 (see docs/meta1.md). This package is not claimed to be
// byte-compatible with a real MeTA1. Header modifications follow
// pmult.HeaderList with the model's rules: no hidden header above the
// list, a change replaces the value and keeps the header's name.
//
// It imports adapters/meta1/pmilter, macros, pmult and internal/connserve.
package meta1
