// doc.go: package documentation.

// Package mailfromd converts the configuration of mailfromd's pmult (GNU
// Mailutils syntax: statements, blocks, lists, strings, comments,
// `include`, `program pmult { … }`) into this pmult's TOML: listen and the
// thread and descriptor limits go to [meta1], each `client` to a
// [[backend]] of type milter (address, the timeouts, log_level), logging
// and debug to the top level. Convert reports every statement it cannot
// convert, or converts only approximately, with its file and line. It is
// `pmult import`; it links no engine (addresses and durations are checked
// with config/syntax).
package mailfromd
