package filter_test

import (
	"context"
	"testing"

	"github.com/mailmux/mailmux/bench"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// BenchmarkFilterMessage is one message through an engine session whose
// only backend is the filter with 100 rules (one of them on a 10,000-entry
// CIDR list file), against the same session with a backend that answers
// continue to everything (baseline, same run).
func BenchmarkFilterMessage(b *testing.B) {
	path, err := bench.CIDRList(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s, errs := parse(b, bench.FilterRules(path))
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
