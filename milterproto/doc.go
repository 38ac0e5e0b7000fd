// Package milterproto is the Sendmail milter wire codec, protocol versions 2
// to 6: packet framing, every SMFIC/SMFIR command and reply code, the
// SMFIF/SMFIP/SMFIM flags, typed payloads that keep the raw bytes (header
// values with their leading space and folding, MAIL/RCPT argv as separate
// strings, macro pairs in order, empty macro packets), and the negotiation
// arithmetic of the protocol.
//
// It knows nothing of sockets, sessions or policy: readers and writers work
// on any io.Reader/io.Writer, decoders on byte slices. No decoder panics on
// any input; malformed, truncated, zero-length or oversize packets return
// errors that say what is wrong. See ../../shared/reference/milter-protocol.md
// (§11 is the checklist this package follows).
package milterproto
