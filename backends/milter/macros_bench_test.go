package milter

import (
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// BenchmarkMacroPairs is the per-event work of a filter that asked for a
// list at MAIL (SMFIR_SETSYMLIST): picking the asked macros out of the
// MTA's set.
func BenchmarkMacroPairs(b *testing.B) {
	s := &session{b: &Backend{}}
	s.setMacroLists(map[pmult.Kind][]string{pmult.KindMail: {"i", "{mail_addr}", "{auth_authen}", "{client_addr}"}})
	set := pmult.MacroSet{For: pmult.KindMail,
		Pairs: []string{"i", "Q1", "{mail_addr}", "a@b", "{auth_authen}", "u", "{client_addr}", "192.0.2.1"}}
	b.ReportAllocs()
	for b.Loop() {
		if p := s.macroPairs(set); len(p) != 8 {
			b.Fatal(p)
		}
	}
}
