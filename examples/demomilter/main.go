// Command demomilter is a small example backend milter for pmult's demo
// (make run): it adds an "X-Demo-Milter: seen by NAME" header to every
// message and rejects recipients whose local part is "reject". It is
// built on the project's test milter, not a general milter library.
//
//	demomilter -listen unix:/tmp/demo.sock -name demo1
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

func main() {
	listen := flag.String("listen", "inet:127.0.0.1:7358", "listen address: inet:HOST:PORT or unix:PATH")
	name := flag.String("name", "demo", "name used in the added header")
	flag.Parse()
	network, addr := "tcp", strings.TrimPrefix(*listen, "inet:")
	if p, ok := strings.CutPrefix(*listen, "unix:"); ok {
		network, addr = "unix", p
		os.Remove(p)
	}
	s := &testmilter.Server{
		Actions: mp.ActAddHeaders,
		Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			switch p.Code {
			case mp.CmdRcpt:
				args, err := mp.ParseArgv(p.Code, p.Data)
				if err == nil && strings.HasPrefix(strings.ToLower(strings.Trim(args[0], "<")), "reject@") {
					return []mp.Packet{testmilter.Reply(mp.RespReplyCode,
						testmilter.Str("550 5.7.1 demo milter "+*name+" rejects this recipient"))}
				}
			case mp.CmdEOB:
				return []mp.Packet{
					testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-Demo-Milter", "seen by "+*name)),
					{Code: mp.RespContinue},
				}
			}
			return nil
		},
	}
	a, err := s.Listen(network, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demomilter:", err)
		os.Exit(71)
	}
	if network == "unix" {
		os.Chmod(addr, 0o666)
	}
	fmt.Fprintf(os.Stderr, "demomilter %s listening on %s\n", *name, a)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Stop()
}
