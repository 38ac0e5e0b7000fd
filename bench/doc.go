// Package bench measures the multiplexer against a baseline taken in the
// same run: sessions per second and added latency per envelope command
// through pmult with 1, 3 and 5 null backends versus a client talking to
// one null backend directly, heap per idle session, and the parallel
// envelope with slow backends versus a serial chain. The null backends run
// in a child process so that their work and heap are not counted as ours.
// `make bench` prints the table (cmd: bench/benchtable); `go test -bench`
// runs the same measurements as benchmarks.
package bench
