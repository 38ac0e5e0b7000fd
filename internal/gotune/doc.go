// Package gotune holds the Go runtime settings pmult runs with (and the
// benchmarks that measure it, so they measure what runs).
//
// KeepSysmonAwake keeps the runtime's system monitor out of its "all
// processors idle" deep sleep.
//
// Why: pmult's work comes in many short bursts (one milter round trip
// is a few microseconds of CPU between waits on the MTA and the
// backends), so both of Go's processors go idle many times per message.
// The monitor thread (sysmon) then parks until the next system call
// wakes it, and each such wake restarts its polling at 20 µs (Go 1.26,
// runtime/proc.go sysmon: syscallWake resets its idle count). Through
// Postfix with 3 pymilter backends that was ~18 nanosleeps and a futex
// wake per message, ~0.15-0.2 ms of pmult's ~0.8 ms CPU per message
// (make bench-postfix, strace -c). With GODEBUG=schedtrace set, sysmon
// never takes the deep sleep and backs off to its 10 ms period instead
// (about 100 short wakeups a second when idle, ~0.03% of a core).
//
// The side effects of schedtrace=2147483647 (ms, the largest value):
// one "SCHED" line of scheduler counters on standard error every 24.8
// days of system uptime (so once at start on a host up longer than
// that), and the scheduler's state in the report of a fatal runtime
// error. GODEBUG is read by the runtime only at process start, so KeepSysmonAwake
// re-executes the binary once with it added; any schedtrace already in
// GODEBUG (schedtrace=0 to opt out) is left as it is, and so is a start
// where the re-exec is not possible.
package gotune
