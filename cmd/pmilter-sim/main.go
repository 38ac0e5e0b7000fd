// Command pmilter-sim plays MeTA1's smtps against pmult's MeTA1 front end
// over the project's MODELLED pmilter protocol (provisional, unverified
// against MeTA1; see docs/meta1.md). It reads one SMTP session (client
// side) from standard input and prints what smtps would answer, applying
// the policy milter's modifications to the message it prints.
//
//	pmilter-sim [--url inet://127.0.0.1:3333] [--timeout 5m]
//	            [--flags abort|accept_but_reconnect] [--client 192.0.2.1:40000]
//	            [--hostname client.example.org] [--macro name=value]... < script
//
// Defaults: --url inet://127.0.0.1:3333, --timeout 5m, no flags.
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

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/meta1sim"
)

type macroFlag map[string]string

func (m macroFlag) String() string { return "" }
func (m macroFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want name=value, not %q", s)
	}
	m[k] = v
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
	macros := macroFlag{}
	fs.Var(macros, "macro", "MeTA1 macro `name=value` (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 64
	}
	a, err := config.ParseAddress(*url)
	if err != nil {
		fmt.Fprintf(stderr, "pmilter-sim: --url: %v\n", err)
		return 64
	}
	fl, err := meta1sim.ParseFlags(*flags)
	if err != nil {
		fmt.Fprintf(stderr, "pmilter-sim: --flags: %v\n", err)
		return 64
	}
	ap, err := netip.ParseAddrPort(*client)
	if err != nil {
		fmt.Fprintf(stderr, "pmilter-sim: --client: %v\n", err)
		return 64
	}
	ctx := context.Background()
	c, err := meta1sim.Dial(ctx, meta1sim.Config{Network: a.Network, Address: a.Addr, Timeout: *timeout, Flags: fl})
	if err != nil {
		fmt.Fprintf(stderr, "pmilter-sim: %v\n", err)
		return 69
	}
	defer c.Close()
	err = meta1sim.RunScript(ctx, c, stdin, stdout, meta1sim.ScriptOptions{
		ClientAddr: ap.Addr(), ClientPort: int(ap.Port()), Hostname: *hostname, Macros: macros})
	if err != nil {
		fmt.Fprintf(stderr, "pmilter-sim: %v\n", err)
		return 1
	}
	return 0
}
