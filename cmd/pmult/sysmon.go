// sysmon.go: the daemon runs with the Go runtime's system monitor kept
// out of its "all processors idle" deep sleep.
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
// error. GODEBUG is read by the runtime only at process start, so main
// re-executes the binary once with it added; any schedtrace already in
// GODEBUG (schedtrace=0 to opt out) is left as it is, and so is a start
// where the re-exec is not possible.
package main

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// sysmonSetting is what keepSysmonAwake adds to GODEBUG.
const sysmonSetting = "schedtrace=2147483647"

// keepSysmonAwake re-executes pmult with sysmonSetting in GODEBUG when
// the daemon is about to run (args as run takes them) and GODEBUG has
// no schedtrace. It returns only when it does not re-execute.
func keepSysmonAwake(args []string) {
	if runtime.GOOS != "linux" || !daemonRun(args) {
		return
	}
	env, ok := sysmonEnv(os.Environ())
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	syscall.Exec(exe, os.Args, env) // returns only on failure: run as we are
}

// sysmonEnv returns env with sysmonSetting added to GODEBUG, and false
// when GODEBUG sets schedtrace already.
func sysmonEnv(env []string) ([]string, bool) {
	godebug := -1
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if hasSetting(v, "schedtrace") {
				return env, false
			}
			godebug = i
		}
	}
	out := append([]string(nil), env...)
	switch {
	case godebug < 0:
		out = append(out, "GODEBUG="+sysmonSetting)
	case out[godebug] == "GODEBUG=":
		out[godebug] += sysmonSetting
	default:
		out[godebug] += "," + sysmonSetting
	}
	return out, true
}

// daemonRun reports whether args (without the program name) start the
// daemon rather than a subcommand (check, mta-config, why, …).
func daemonRun(args []string) bool {
	return len(args) == 0 || args[0] == "run" || strings.HasPrefix(args[0], "-")
}

// hasSetting reports whether the GODEBUG value v sets key.
func hasSetting(v, key string) bool {
	for _, f := range strings.Split(v, ",") {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}
