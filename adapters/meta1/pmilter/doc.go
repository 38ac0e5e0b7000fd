// Package pmilter is the byte-level codec of the MeTA1 policy-milter
// protocol as MODELLED by this project: record framing, record types,
// field tags, reply codes, stage, macro and header-modification ids, an
// Encoder and the decoders of typed entries. Every byte-level decision
// sits in one table in codec.go; it is PROVISIONAL and unverified against
// a real MeTA1 (see docs/meta1.md), so that only that file has to change
// once MeTA1's headers can be read. No decoder panics on any input
// (fuzzed).
//
// It is shared by the front end (adapters/meta1) and the simulator
// (sim/meta1), and imports the standard library only.
package pmilter
