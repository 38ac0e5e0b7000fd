// mtaconfig.go: `pmult mta-config postfix|sendmail -c FILE` prints the
// MTA-side configuration for this pmult: the milter socket and, per stage,
// the macro list the MTA must send, that is the stage's [mta_macros] list
// (else the MTA's default list) plus every macro the configured backends
// ask for in their negotiation (each backend is contacted once), like
// mailfromd's postfix-macros.sed. For the stages where a backend asks for
// a list, pmult sends that same list to the MTA itself (SMFIF_SETSYMLIST),
// which then replaces the MTA's own setting for pmult: the output says so.
// Macros a [macros] table sets or pmult derives are left out of the lists
// (the output names them). For Postfix, a unix socket under the queue
// directory (--queue-directory, default /var/spool/postfix) is printed
// relative to it, which works with Debian's chrooted smtpd and without a
// chroot; one outside it gets a comment on the chroot it needs off.
// With an [smtp] table, postfix also prints the SMTP front's services and
// exim its router and transport (mtaconfig_smtp.go).

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/milterkind"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

func mtaConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "postfix" && args[0] != "sendmail" && args[0] != "meta1" && args[0] != "exim") {
		fmt.Fprintln(stderr, "usage: pmult mta-config postfix|sendmail|meta1|exim [-c FILE]")
		return 64
	}
	mta := args[0]
	o, err := parseFlags("pmult mta-config", args[1:], stderr)
	_ = o.live // the backends are always asked (--live is accepted for symmetry with check)
	if err != nil {
		return 64
	}
	cfg := config.Default()
	if o.config != "" {
		if cfg, err = config.Load(o.config); err != nil {
			for _, e := range config.Errors(err) {
				fmt.Fprintln(stderr, e)
			}
			return exitConfig
		}
	}
	if mta == "meta1" {
		return meta1Config(cfg, stdout, stderr)
	}
	if mta == "exim" {
		return smtpExim(cfg, stdout, stderr)
	}
	if mta == "postfix" && len(cfg.Milter.ListenAddrs) == 0 && len(cfg.Smtp.ListenAddrs) > 0 {
		smtpPostfix(cfg, stdout) // an SMTP-front-only pmult: no milter lines
		return 0
	}
	eng, err := cfg.Engine(nil)
	if err != nil {
		fmt.Fprintln(stderr, "pmult:", err)
		return exitConfig
	}
	defaults := macros.PostfixDefaults
	if mta == "sendmail" {
		defaults = macros.SendmailDefaults
	}
	var lists [macros.NumStages][]string
	baseline := cfg.MTAMacros.Stages()
	for st := range lists {
		lists[st] = defaults[st]
		if baseline[st] != nil {
			lists[st] = baseline[st]
		}
	}
	var asked [macros.NumStages]bool
	var synthesised []string
	offer := pmult.Offer{Actions: pmult.ActModify | pmult.ActQuarantine, SymList: true, Skip: true,
		RejectedRcpts: true, LeadingSpace: true, Version: 6}
	for _, sl := range eng.Slots {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := sl.Backend.Open(ctx, pmult.OpenInfo{Offer: offer})
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "pmult: backend %s: %v (its macro needs are not included)\n", sl.Backend.Name(), err)
			continue
		}
		for k, list := range s.Caps().Macros {
			if ms, ok := milterkind.Stage(k); ok && len(list) > 0 {
				st := macros.Stage(ms) // the same SMFIM_* numbers
				for _, n := range list {
					// What a table sets or pmult derives is not asked of the MTA.
					if who := provider(cfg, st, n); who != "table" && who != "pmult" {
						lists[st] = macros.Union(lists[st], n)
					} else {
						synthesised = macros.Union(synthesised, n)
					}
				}
				asked[st] = true
			}
		}
		s.Close()
	}
	var set []string
	for st := macros.Stage(0); st < macros.NumStages; st++ {
		if asked[st] {
			set = append(set, st.String())
		}
	}
	comment := "#"
	if mta == "sendmail" {
		comment = "dnl"
	}
	if len(set) > 0 {
		fmt.Fprintf(stdout, "%s Backends ask for macro lists at: %s. pmult then asks the MTA itself, at those stages,\n", comment, strings.Join(set, ", "))
		fmt.Fprintf(stdout, "%s for the list below ([mta_macros] or the MTA default, plus the backends' macros), and\n", comment)
		fmt.Fprintf(stdout, "%s the MTA uses it instead of its own setting for pmult: add a macro that every backend\n", comment)
		fmt.Fprintf(stdout, "%s must get (e.g. {client_ptr}) to pmult's [mta_macros] table, not only here.\n", comment)
	}
	switch mta {
	case "postfix":
		if len(synthesised) > 0 {
			fmt.Fprintf(stdout, "# Backends also ask for %s: pmult provides them ([macros] tables, or derived).\n", strings.Join(synthesised, " "))
		}
		fmt.Fprint(stdout, "# main.cf\n")
		fmt.Fprintf(stdout, "smtpd_milters = %s\nnon_smtpd_milters = $smtpd_milters\n", postfixMilter(cfg, o.queueDir, stdout))
		fmt.Fprintln(stdout, "milter_protocol = 6\nmilter_default_action = tempfail")
		for st := macros.Stage(0); st < macros.NumStages; st++ {
			fmt.Fprintf(stdout, "%s = %s\n", macros.PostfixParam[st], strings.Join(lists[st], " "))
		}
		postfixListeners(cfg, o.queueDir, stdout)
		smtpPostfix(cfg, stdout)
	case "sendmail":
		spec := sendmailSocket(cfg)
		fmt.Fprintf(stdout, "dnl sendmail.mc\nINPUT_MAIL_FILTER(`pmult', `S=%s, F=T, T=C:10s;S:30s;R:5m;E:10m')\n", spec)
		for st := macros.Stage(0); st < macros.NumStages; st++ {
			fmt.Fprintf(stdout, "define(`%s', `%s')dnl\n", macros.SendmailOption[st], strings.Join(lists[st], ", "))
		}
	}
	sizeConfig(mta, cfg, stdout)
	return 0
}

// sendmailSocket returns the INPUT_MAIL_FILTER S= form of pmult's first
// listen address (the one postfixMilter gives Postfix): unix:PATH,
// inet:PORT@HOST or inet6:PORT@HOST; a wildcard host is the loopback
// address Sendmail connects to.
func sendmailSocket(cfg *config.Config) string {
	a, _ := config.ParseAddress(config.DefaultListen) // a constant that parses
	if len(cfg.Milter.ListenAddrs) > 0 {
		a = cfg.Milter.ListenAddrs[0]
	}
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	host, port, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return a.String()
	}
	family := "inet"
	if a.Network == "tcp6" || strings.Contains(host, ":") {
		family = "inet6"
	}
	switch {
	case family == "inet" && (host == "" || host == "0.0.0.0"):
		host = "127.0.0.1"
	case family == "inet6" && (host == "" || host == "::"):
		host = "::1"
	}
	return family + ":" + port + "@" + host
}

// postfixMilter returns the smtpd_milters form of pmult's first listen
// address. Postfix's smtpd and cleanup run with the queue directory as
// their working directory, and chrooted there on Debian (master.cf chroot
// column y): a unix socket under it is written relative to it, which
// works chrooted or not; one outside it only without the chroot, which
// the comment printed to w says.
func postfixMilter(cfg *config.Config, queueDir string, w io.Writer) string {
	if len(cfg.Milter.ListenAddrs) == 0 {
		return "inet:127.0.0.1:7357"
	}
	return postfixSocket(cfg.Milter.ListenAddrs[0], queueDir, w)
}

// postfixSocket is postfixMilter for one listen address.
func postfixSocket(a config.Address, queueDir string, w io.Writer) string {
	if a.Network != "unix" {
		return strings.Replace(a.String(), "inet6:", "inet:", 1)
	}
	q := strings.TrimSuffix(queueDir, "/") + "/"
	if rel, ok := strings.CutPrefix(a.Addr, q); ok && rel != "" {
		fmt.Fprintf(w, "# %s is under queue_directory (%s): relative to it, the one form that works\n", a.Addr, queueDir)
		fmt.Fprintln(w, "# whether smtpd and cleanup run chrooted (Debian's master.cf: chroot = y) or not.")
		return "unix:" + rel
	}
	fmt.Fprintf(w, "# %s is outside queue_directory (%s): a chrooted smtpd (Debian's master.cf default,\n", a.Addr, queueDir)
	fmt.Fprintf(w, "# chroot column y) looks for it under %s and fails. Either listen under it\n", queueDir)
	fmt.Fprintf(w, "# ([milter] listen = [\"unix:%spmult/pmult.sock\"], smtpd_milters = unix:pmult/pmult.sock)\n", q)
	fmt.Fprintln(w, "# or set the chroot column of smtpd (and cleanup, for non_smtpd_milters) to n in master.cf;")
	fmt.Fprintln(w, "# this form assumes chroot n:")
	return "unix:" + a.Addr
}

// meta1Config prints the smtps policy_milter block of /etc/meta1/meta1.conf
// for the first [meta1] listen address (mailfromd manual, 9.2).
func meta1Config(cfg *config.Config, stdout, stderr io.Writer) int {
	if len(cfg.Meta1.ListenAddrs) == 0 {
		fmt.Fprintln(stderr, "pmult mta-config meta1: the configuration has no [meta1] listen address")
		return exitConfig
	}
	a := cfg.Meta1.ListenAddrs[0]
	fmt.Fprintln(stdout, "# /etc/meta1/meta1.conf (pmult's MeTA1 wire format is a provisional model: docs/meta1.md)")
	fmt.Fprintln(stdout, "smtps {\n    policy_milter {\n        socket {")
	if a.Network == "unix" {
		fmt.Fprintf(stdout, "            type = unix;\n            path = %s;\n", a.Addr)
	} else {
		host, port, _ := strings.Cut(a.Addr, "]:")
		if !strings.HasPrefix(a.Addr, "[") {
			i := strings.LastIndexByte(a.Addr, ':')
			host, port = a.Addr[:i], a.Addr[i+1:]
		} else {
			host = strings.TrimPrefix(host, "[")
		}
		fmt.Fprintf(stdout, "            type = inet;\n            address = %s;\n            port = %s;\n", host, port)
	}
	fmt.Fprintln(stdout, "        };\n        timeout = 5m;\n        flags = { abort };\n    };\n};")
	return 0
}

// postfixListeners prints, for a pmult with several (or named) listeners,
// the master.cf override of each smtpd service that should get that
// listener's chain: one pmult process, a chain per listener (the
// backends' conditions on listener choose it).
func postfixListeners(cfg *config.Config, queueDir string, w io.Writer) {
	m := cfg.Milter
	named := false
	for _, n := range m.ListenNames {
		named = named || n != ""
	}
	if len(m.ListenAddrs) < 2 && !named {
		return
	}
	fmt.Fprintln(w, "# master.cf: point each smtpd service at its own pmult listener (main.cf's smtpd_milters")
	fmt.Fprintln(w, "# above is the first one); backends with `if.listener` conditions give each its chain.")
	for i, a := range m.ListenAddrs {
		name := m.ListenNames[i]
		if name == "" {
			name = fmt.Sprintf("listen[%d]", i)
		}
		var notes strings.Builder
		sock := postfixSocket(a, queueDir, &notes)
		fmt.Fprintf(w, "# listener %s (%s), under its smtpd line, e.g. \"smtp inet n - y - - smtpd\":\n%s", name, a, notes.String())
		fmt.Fprintf(w, "#   -o smtpd_milters=%s\n", sock)
	}
}
