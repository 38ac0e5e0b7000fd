// check.go: `pmult check -c FILE`: every error of the file (exit 78), its
// warnings (old key spellings and the key replacing each, the MTA's
// end-of-message timer; exit status unchanged), the accounts of user,
// group, socket_owner and socket_group on this host, and the spool
// directory; with --live, what every backend negotiates (live.go; exit 1
// when one is unreachable or starved of a macro).

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/service"
)

func check(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags("pmult check", args, stderr)
	if err != nil {
		return 64
	}
	if o.config == "" {
		fmt.Fprintln(stderr, "pmult check: -c FILE is required")
		return 64
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		errs := config.Errors(err)
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "%s: %d error(s)\n", o.config, len(errs))
		return exitConfig
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	for _, w := range service.TimerWarnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", o.config, w)
	}
	if _, err := service.ResolveIdentity(cfg); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", o.config, line)
		}
		fmt.Fprintf(stderr, "%s: user, group or socket owner unknown on this host\n", o.config)
		return exitConfig
	}
	if !checkSpool(cfg, stdout, stderr) {
		fmt.Fprintf(stderr, "%s: spool_dir unusable\n", o.config)
		return exitConfig
	}
	if o.live && !checkLive(cfg, stdout) {
		fmt.Fprintf(stderr, "%s: a backend is unreachable or asks for a macro nobody provides (NOBODY above)\n", o.config)
		return 1
	}
	checkSmtp(cfg, o.config, stdout, stderr)
	fmt.Fprintf(stdout, "%s: OK (%d listen address(es), %d MeTA1 listen address(es), %d backend(s))\n",
		o.config, len(cfg.Milter.ListenAddrs), len(cfg.Meta1.ListenAddrs), len(cfg.Backends))
	return 0
}
