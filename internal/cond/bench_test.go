package cond_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// BenchmarkCondition is the cost of asking one condition at one stage:
// a 10,000-entry CIDR list file and a sender regex.
func BenchmarkCondition(b *testing.B) {
	var lines strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&lines, "10.%d.%d.0/24\n", i/256, i%256)
	}
	path := filepath.Join(b.TempDir(), "nets")
	os.WriteFile(path, []byte(lines.String()), 0o644)
	c, errs := cond.Compile("if", map[string]any{"client_file": path, "sender_regex": `@example\.(org|com)$`})
	if errs != nil {
		b.Fatal(errs)
	}
	f := &pmult.Facts{At: pmult.KindMail, Address: "10.20.30.40", Sender: "a@example.org"}
	b.ReportAllocs()
	for b.Loop() {
		c.Eval(f)
	}
}

// BenchmarkSessionCondition is one message through an engine session
// with one backend, without and with a condition (same run: the
// difference is the conditions' cost for the message).
func BenchmarkSessionCondition(b *testing.B) {
	c, _ := cond.Compile("if", map[string]any{"client": []any{"192.0.2.0/24"}, "rcpt_domain": "example.net"})
	for _, tc := range []struct {
		name string
		c    pmult.Condition
	}{{"baseline", nil}, {"condition", c}} {
		b.Run(tc.name, func(b *testing.B) {
			be := pmulttest.New("a", pmulttest.Reader)
			e := &pmult.Engine{Slots: []pmult.Slot{{Backend: be, Policy: pmult.Policy{Condition: tc.c}}}}
			b.ReportAllocs()
			for b.Loop() {
				h := pmulttest.Open(b, e, pmulttest.AllOffer)
				h.EnvelopeToData()
				h.Message([]string{"Subject", " x"}, "body\r\n")
				h.S.Close()
				be.Reset()
			}
		})
	}
}
