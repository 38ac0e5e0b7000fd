package pmult_test

import (
	"context"
	"testing"

	"github.com/mailmux/mailmux/macros"
	. "github.com/mailmux/mailmux/pmult"
)

// BenchmarkMacroTables is one SMTP session's envelope (CONNECT, HELO,
// MAIL, RCPT, DATA, EOM) with the macros Postfix sends by default, through
// the milter dialect's table and the synthesis of derivable macros, to
// three backends that answer at once.
// The "none" case has no tables (Engine.Macros nil): the difference is
// what translation and synthesis cost.
func BenchmarkMacroTables(b *testing.B) {
	milter, _ := macros.Builtin("milter")
	b.Run("none", func(b *testing.B) { benchMacroTables(b, nil) })
	b.Run("milter", func(b *testing.B) {
		benchMacroTables(b, &MacroTables{Dialect: map[string]*macros.Table{"milter": milter}, Version: "1"})
	})
}

func benchMacroTables(b *testing.B, tables *MacroTables) {
	e := &Engine{Slots: []Slot{{Backend: instant{"a"}}, {Backend: instant{"b"}}, {Backend: instant{"c"}}},
		Macros: tables}
	ctx := context.Background()
	offer := allOffer
	offer.Front = "milter"
	set := func(k Kind, pairs ...string) []MacroSet { return []MacroSet{{For: k, Pairs: pairs}} }
	evs := []*Event{
		{Kind: KindConnect, Hostname: "client.example", Family: '4', Port: 2525, Address: "192.0.2.1",
			Macros: set(KindConnect, "j", "mx.example", "{daemon_name}", "smtpd", "{daemon_addr}", "192.0.2.25", "v", "Postfix 3.7.11", "_", "client.example [192.0.2.1]")},
		{Kind: KindHelo, Arg: "client.example", Macros: set(KindHelo)},
		{Kind: KindMail, Args: []string{"<a@example.org>"}, Macros: set(KindMail, "i", "4XQ1", "{mail_mailer}", "smtp", "{mail_host}", "example.org", "{mail_addr}", "a@example.org")},
		{Kind: KindRcpt, Args: []string{"<b@example.net>"}, Macros: set(KindRcpt, "{rcpt_mailer}", "local", "{rcpt_host}", "", "{rcpt_addr}", "b@example.net")},
		{Kind: KindData, Macros: set(KindData, "i", "4XQ1")},
		{Kind: KindEOM, Macros: set(KindEOM, "{msg_id}", "<1@example.org>")},
	}
	b.ReportAllocs()
	for b.Loop() {
		s := e.NewSession("bench", nil)
		s.Open(ctx, offer, nil)
		for _, ev := range evs {
			c := *ev
			if r := s.Handle(ctx, &c); r.Verdict != Continue {
				b.Fatal(ev.Kind, r)
			}
		}
		s.Close()
	}
}
