package pmult_test

import (
	"testing"

	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// lastSet returns the macro set for kind k of the last event of kind k
// the backend got.
func lastSet(t *testing.T, b *pmulttest.Backend, k pmult.Kind) pmult.MacroSet {
	t.Helper()
	evs := b.Events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Kind != k {
			continue
		}
		for _, m := range evs[i].Macros {
			if m.For == k {
				return m
			}
		}
		t.Fatalf("%s event without its macro set: %+v", k, evs[i].Macros)
	}
	t.Fatalf("no %s event", k)
	return pmult.MacroSet{}
}

func val(pairs []string, name string) string {
	v, _ := macros.Lookup(pairs, name)
	return v
}

func TestMacroTablesPerListenerAndSynthesis(t *testing.T) {
	sub, _ := macros.ParseTable(map[string]any{"set": map[string]any{"connect:{daemon_name}": "ORIGINATING"}})
	glob, _ := macros.ParseTable(map[string]any{"drop": []any{"{secret}"}})
	tables := &pmult.MacroTables{Global: glob, Listener: map[string]*macros.Table{"submission": sub}, Version: "1.2"}
	for _, tc := range []struct {
		listener, daemon string
	}{{"submission", "ORIGINATING"}, {"inbound", "smtpd"}} {
		t.Run(tc.listener, func(t *testing.T) {
			b := pmulttest.New("b", pmult.Caps{})
			e := &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}, Macros: tables}
			h := pmulttest.Open(t, e, pmult.Offer{Listener: tc.listener, Front: "milter"})
			h.Do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 2525,
				Address: "192.0.2.1", Macros: []pmult.MacroSet{{For: pmult.KindConnect,
					Pairs: []string{"{daemon_name}", "smtpd", "{secret}", "x"}}}})
			c := lastSet(t, b, pmult.KindConnect)
			if got := val(c.Pairs, "daemon_name"); got != tc.daemon {
				t.Errorf("{daemon_name} = %q, want %q", got, tc.daemon)
			}
			if _, ok := macros.Lookup(c.Pairs, "secret"); ok {
				t.Errorf("{secret} not dropped: %q", c.Pairs)
			}
			for name, want := range map[string]string{"client_addr": "192.0.2.1", "client_port": "2525",
				"client_name": "client.example", "client_resolve": "OK", "listener": tc.listener,
				"multiplexer": "pmult", "mult_version": "1.2"} {
				if got := val(c.Synth, name); got != want {
					t.Errorf("synthesised %s = %q, want %q (synth %q)", name, got, want, c.Synth)
				}
			}
			h.Helo()
			// The MTA gives the queue id at MAIL only (Postfix's default lists).
			h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
				Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q123"}}}})
			m := lastSet(t, b, pmult.KindMail)
			if val(m.Synth, "mail_addr") != "a@example.org" || val(m.Synth, "mail_host") != "example.org" {
				t.Errorf("mail synth %q", m.Synth)
			}
			if _, ok := macros.Lookup(m.Synth, "i"); ok {
				t.Errorf("i synthesised though sent: %q", m.Synth)
			}
			h.Rcpt("b@example.net")
			h.Do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<bad@example.net>"}, RejectedRcpt: true})
			h.Rcpt("c@example.com")
			r := lastSet(t, b, pmult.KindRcpt)
			for name, want := range map[string]string{"rcpt_addr": "c@example.com", "rcpt_host": "example.com",
				"i": "Q123", "nrcpts": "1", "mail_addr": "a@example.org"} {
				if got := val(r.Synth, name); got != want {
					t.Errorf("rcpt: synthesised %s = %q, want %q (synth %q)", name, got, want, r.Synth)
				}
			}
			h.Data()
			if got := val(lastSet(t, b, pmult.KindData).Synth, "nrcpts"); got != "2" {
				t.Errorf("data: nrcpts = %q, want 2", got)
			}
			// At EOH, where the MTA did not send it, the listener's
			// {daemon_name} is offered to a backend that asks.
			h.Header("Subject", " x")
			h.EOH()
			if got, want := val(lastSet(t, b, pmult.KindEOH).Synth, "daemon_name"), map[string]string{"submission": "ORIGINATING"}[tc.listener]; got != want {
				t.Errorf("eoh: offered {daemon_name} = %q, want %q", got, want)
			}
		})
	}
}

// Without tables the events pass as the front end made them.
func TestMacroTablesNil(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	h := pmulttest.Open(t, &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}}, pmult.Offer{})
	h.Connect()
	if evs := b.Events(); len(evs[0].Macros) != 0 {
		t.Errorf("macros added: %+v", evs[0].Macros)
	}
}

// A backend that skips CONNECT but asks for {client_addr} at MAIL still
// makes the engine ask the MTA for CONNECT (and answer it), to derive it.
func TestMacroSynthWantsConnect(t *testing.T) {
	caps := pmult.Caps{NoEvent: pmult.Kinds(pmult.KindConnect, pmult.KindHelo, pmult.KindRcpt),
		Macros: map[pmult.Kind][]string{pmult.KindMail: {"{client_addr}"}}}
	offer := pmult.Offer{NoReply: pmult.Kinds(pmult.KindConnect)}
	for _, tc := range []struct {
		tables *pmult.MacroTables
		want   bool
	}{{nil, false}, {&pmult.MacroTables{}, true}} {
		b := pmulttest.New("b", caps)
		h := pmulttest.Open(t, &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}, Macros: tc.tables}, offer)
		if got := !h.Neg.NoEvent.Has(pmult.KindConnect) && !h.Neg.NoReply.Has(pmult.KindConnect); got != tc.want {
			t.Errorf("tables %v: CONNECT wanted and answered %v, want %v (neg %+v)", tc.tables != nil, got, tc.want, h.Neg)
		}
		if h.Neg.NoEvent.Has(pmult.KindHelo) == false {
			t.Errorf("HELO wanted though nobody needs it")
		}
	}
}
