// sysmon.go: KeepSysmonAwake (see the package documentation).

package gotune

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// SysmonSetting is what KeepSysmonAwake adds to GODEBUG.
const SysmonSetting = "schedtrace=2147483647"

// KeepSysmonAwake re-executes the running program with SysmonSetting in
// GODEBUG when GODEBUG has no schedtrace (Linux only). It returns only
// when it does not re-execute.
func KeepSysmonAwake() {
	if runtime.GOOS != "linux" {
		return
	}
	env, ok := SysmonEnv(os.Environ())
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	syscall.Exec(exe, os.Args, env) // returns only on failure: run as we are
}

// SysmonEnv returns env with SysmonSetting added to GODEBUG, and false
// when GODEBUG sets schedtrace already.
func SysmonEnv(env []string) ([]string, bool) {
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
		out = append(out, "GODEBUG="+SysmonSetting)
	case out[godebug] == "GODEBUG=":
		out[godebug] += SysmonSetting
	default:
		out[godebug] += "," + SysmonSetting
	}
	return out, true
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
