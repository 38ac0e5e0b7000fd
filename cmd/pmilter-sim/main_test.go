// main_test.go: pmilter-sim (mtasim's front with meta1sim.Backend) against
// pmult's MeTA1 front with no backends: replies, expectations, the message
// report, usage and unreachable exit codes.

package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/pmult"
)

func TestRun(t *testing.T) {
	srv := &m1.Server{Engine: &pmult.Engine{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	url := "inet://" + ln.Addr().String()
	script := "\\E250\nEHLO me\nMAIL FROM:<a@x> SIZE=10\nRCPT TO:<b@y>\nDATA\nSubject: s\n\n..dot\n\\E250\n.\nQUIT\n"
	var out, errb bytes.Buffer
	code := run([]string{"--url", url, "--client", "[2001:db8::1]:25", "--macro", "taid=T1", "--flags", "abort"},
		strings.NewReader(script), &out, &errb)
	for _, want := range []string{"250 Recipient OK", "=== message 1: continue", "\n.dot\n", "250 Mail accepted", "221 Done"} {
		if code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("exit %d, output lacks %q:\n%s%s", code, want, out.String(), errb.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"--url", url}, strings.NewReader("EHLO me\n\\E550\nMAIL FROM:<a@x>\n"), &out, &errb); code != 1 {
		t.Errorf("wrong expectation: exit %d %s", code, errb.String())
	}
	for _, bad := range [][]string{{"--url", "bogus"}, {"--flags", "sometimes"}, {"--client", "x"}, {"--macro", "novalue"}} {
		if code := run(bad, strings.NewReader(""), &out, &errb); code != 64 {
			t.Errorf("%q: exit %d, want 64", bad, code)
		}
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "inet://" + ln2.Addr().String()
	ln2.Close()
	if code := run([]string{"--url", dead}, strings.NewReader("EHLO me\n"), &out, &errb); code != 69 {
		t.Errorf("unreachable: exit %d", code)
	}
}
