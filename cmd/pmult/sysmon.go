// sysmon.go: the daemon runs with Go's system monitor kept awake
// (internal/gotune: why, and the side effects).

package main

import (
	"strings"

	"github.com/mailmux/mailmux/internal/gotune"
)

// keepSysmonAwake re-executes pmult with gotune.SysmonSetting when the
// daemon is about to run (args as run takes them); subcommands run as
// they are.
func keepSysmonAwake(args []string) {
	if daemonRun(args) {
		gotune.KeepSysmonAwake()
	}
}

// daemonRun reports whether args (without the program name) start the
// daemon rather than a subcommand (check, mta-config, why, …).
func daemonRun(args []string) bool {
	return len(args) == 0 || args[0] == "run" || strings.HasPrefix(args[0], "-")
}
