// Package testmilter is a small milter server (the filter side) built on
// milterproto, for tests, benchmarks and the example milter: it negotiates
// like libmilter and answers each command through a callback, so tests can
// make it slow, hang, die, send garbage or edit messages. It is a test
// peer for edge cases real milters cannot produce, not a milter library.
package testmilter
