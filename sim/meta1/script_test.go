// script_test.go: RunScript against the MeTA1 front with no backends, and
// the pmilter-sim flag parser.

package meta1sim_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/sim/meta1"
)

func TestRunScript(t *testing.T) {
	srv := &m1.Server{Engine: &pmult.Engine{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c, err := meta1sim.Dial(context.Background(), meta1sim.Config{Network: "tcp", Address: ln.Addr().String(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	script := "EHLO me\nMAIL FROM:<a@x> SIZE=10\nRCPT TO:<b@y>\nDATA\nSubject: s\n\n..dot\n.\nQUIT\n"
	var out bytes.Buffer
	err = meta1sim.RunScript(context.Background(), c, strings.NewReader(script), &out,
		meta1sim.ScriptOptions{ClientAddr: netip.MustParseAddr("192.0.2.1"), ClientPort: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EHLO me -> 250", "RCPT TO:<b@y> -> 250", ". -> 250 2.0.0 message accepted", "| .dot", "QUIT -> 221"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseFlags(t *testing.T) {
	if f, err := meta1sim.ParseFlags("abort,accept_but_reconnect"); err != nil || f != meta1sim.FlagAbort|meta1sim.FlagAcceptButReconnect {
		t.Errorf("%v %v", f, err)
	}
	if _, err := meta1sim.ParseFlags("sometimes"); err == nil {
		t.Error("bad flag accepted")
	}
}
