package filter_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// BenchmarkFilterMessage is one message through an engine session whose
// only backend is the filter with 100 rules (one of them on a 10,000-entry
// CIDR list file), against the same session with a backend that answers
// continue to everything (baseline, same run).
func BenchmarkFilterMessage(b *testing.B) {
	var nets strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&nets, "10.%d.%d.0/24\n", i/256, i%256)
	}
	path := filepath.Join(b.TempDir(), "nets")
	os.WriteFile(path, []byte(nets.String()), 0o644)
	var rules strings.Builder
	fmt.Fprintf(&rules, "[[rule]]\nmatch = { client_file = %q }\naction = \"reject\"\n", path)
	for i := 0; i < 97; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&rules, "[[rule]]\nmatch = { sender_regex = 'spam%d@' }\naction = \"reject\"\n", i)
		case 1:
			fmt.Fprintf(&rules, "[[rule]]\nmatch = { header_regex = { Subject = 'offer %d' } }\naction = \"discard\"\n", i)
		case 2:
			fmt.Fprintf(&rules, "[[rule]]\nmatch = { rcpt_domain = \"d%d.example\" }\naction = \"tempfail\"\n", i)
		}
	}
	rules.WriteString("[[rule]]\naction = \"delete_header\"\nname = \"Authentication-Results\"\nvalue_regex = '^\\s*mx\\.example\\.org;'\n")
	rules.WriteString("[[rule]]\naction = \"add_header\"\nname = \"X-Filtered\"\nvalue = \"yes\"\n")
	s, errs := parse(b, rules.String())
	if errs != nil {
		b.Fatal(errs)
	}
	for _, tc := range []struct {
		name string
		be   pmult.Backend
	}{
		{"baseline", pmult.Func("nop", pmult.Caps{Actions: pmult.ActAddHeaders | pmult.ActChangeHeaders},
			func(_ context.Context, ev *pmult.Event) (pmult.Reply, error) { return pmult.Reply{}, nil })},
		{"filter", s.NewBackend("rules", 0, nil)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := &pmult.Engine{Slots: []pmult.Slot{{Backend: tc.be}}}
			hdrs := []string{"Authentication-Results", " mx.example.org; spf=pass", "Subject", " hello", "From", " a@example.org"}
			b.ReportAllocs()
			for b.Loop() {
				h := pmulttest.Open(b, e, pmulttest.AllOffer)
				h.EnvelopeToData()
				if r := h.Message(hdrs, "body\r\n"); r.Verdict.Objects() {
					b.Fatalf("objected: %+v", r)
				}
				h.S.Close()
			}
		})
	}
}
