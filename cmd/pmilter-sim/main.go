// Command pmilter-sim is a thin alias of `mtasim --pmilter`: it plays
// MeTA1's smtps against pmult's MeTA1 front end over the project's
// MODELLED pmilter protocol (provisional, unverified against MeTA1; see
// docs/meta1.md), through mtasim's SMTP-script front and meta1sim.Backend.
// It reads an mtasim script (SMTP commands, message data, \D \U \L \E \W;
// see docs/mtasim.md) from standard input, prints the replies and, for
// each message, mtasim's report with the policy milter's modifications
// applied and the resulting message. For --bsmtp, --mail-file, daemon and
// load modes use mtasim --pmilter.
//
//	pmilter-sim [--url inet://127.0.0.1:3333] [--timeout 5m]
//	            [--flags abort|accept_but_reconnect] [--client 192.0.2.1:40000]
//	            [--hostname client.example.org] [--macro name=value]... < script
//
// is `mtasim --pmilter URL --pmilter-timeout T --pmilter-flags F
// --sender-socket inet,HOSTNAME,ADDR,PORT -D name=value … < script` with
// the message reports added. Defaults: --url inet://127.0.0.1:3333,
// --timeout 5m, no flags. Exit codes are mtasim's: 0, 1 (an \E
// expectation failed), 64 usage, 65 malformed script, 69 pmilter
// unreachable or broken.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/meta1sim"
	"github.com/mailmux/mailmux/mtasim"
)

type macroFlag []string

func (m *macroFlag) String() string { return strings.Join(*m, ",") }
func (m *macroFlag) Set(s string) error {
	if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
		return fmt.Errorf("want name=value, not %q", s)
	}
	*m = append(*m, s)
	return nil
}

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmilter-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "inet://127.0.0.1:3333", "pmult's MeTA1 `address`")
	timeout := fs.Duration("timeout", 5*time.Minute, "policy_milter timeout")
	flags := fs.String("flags", "", "policy_milter flags: abort, accept_but_reconnect")
	client := fs.String("client", "192.0.2.1:40000", "SMTP client `address:port`")
	hostname := fs.String("hostname", "client.example.org", "SMTP client host name")
	var macros macroFlag
	fs.Var(&macros, "macro", "macro `name=value` (MeTA1 names such as taid, auth_type; repeatable)")
	if err := fs.Parse(args); err != nil {
		return mtasim.ExitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "pmilter-sim: "+format+"\n", a...)
		return mtasim.ExitUsage
	}
	a, err := syntax.ParseAddress(*url)
	if err != nil {
		return usage("--url: %v", err)
	}
	fl, err := meta1sim.ParseFlags(*flags)
	if err != nil {
		return usage("--flags: %v", err)
	}
	ap, err := netip.ParseAddrPort(*client)
	if err != nil {
		return usage("--client: %v", err)
	}
	b := meta1sim.NewBackend(meta1sim.BackendConfig{Name: *url,
		Client: meta1sim.Config{Network: a.Network, Address: a.Addr, Timeout: *timeout, Flags: fl}})
	defer b.Close()
	snd := &mtasim.Sender{Family: '4', Host: *hostname, Addr: ap.Addr().Unmap().String(), Port: ap.Port()}
	if ap.Addr().Unmap().Is6() {
		snd.Family = '6'
	}
	cfg := &mtasim.Config{Backend: b, FilterName: *url, Sender: snd, Defines: macros, RequireHelo: true,
		OnMessage: func(r *mtasim.Result) { r.Print(stdout, true) }}
	err = mtasim.RunScript(context.Background(), cfg, mtasim.NewLineReader(stdin), stdout, mtasim.ScriptOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "pmilter-sim: %v\n", err)
	}
	return mtasim.ExitCode(err)
}
