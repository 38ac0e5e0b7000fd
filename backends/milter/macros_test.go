package milter

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// safeBuf is a log sink for concurrent writers.
type safeBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *safeBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A filter that asked for a list at a stage gets exactly those macros,
// from what the MTA sent or else what the engine derived (even from an MTA
// that cannot take lists); at a stage it asked nothing for it gets what
// the MTA sent; its own table applies first; a macro nobody provides is
// logged once.
func TestMacrosExactlyAsked(t *testing.T) {
	var mu sync.Mutex
	got := map[byte][]string{}
	m := &testmilter.Server{
		Actions:  mp.ActSetSymList,
		SymLists: []mp.SymList{{Stage: mp.StageEnvFrom, Macros: "{client_addr} {mail_addr} {auth_type} {nobody}"}},
		Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdMacro {
				if mc, err := mp.ParseMacro(p.Data); err == nil {
					mu.Lock()
					got[mc.Cmd] = mc.Pairs
					mu.Unlock()
				}
			}
			return nil
		},
	}
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	var logs safeBuf
	own, _ := macros.ParseTable(map[string]any{"rename": map[string]any{"{auth_method}": "{auth_type}"}})
	b := New(Config{Name: "f", Network: "tcp", Address: a.String(), Macros: own,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	for range 2 {
		// The MTA takes no lists (mtasim): SymList false.
		s, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6, Front: "milter"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range []*pmult.Event{
			{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.1",
				Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"j", "mx"}, Synth: []string{"{client_addr}", "192.0.2.1"}}}},
			{Kind: pmult.KindMail, Args: []string{"<a@b>"}, Macros: []pmult.MacroSet{{For: pmult.KindMail,
				Pairs: []string{"i", "Q1", "{auth_method}", "PLAIN"}, Synth: []string{"{client_addr}", "192.0.2.1", "{mail_addr}", "a@b"}}}},
		} {
			if _, err := s.Handle(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Handle(ctx, &pmult.Event{Kind: pmult.KindEOM}); err != nil { // synchronise
			t.Fatal(err)
		}
		s.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"j", "mx"}; !reflect.DeepEqual(got['C'], want) {
		t.Errorf("connect (nothing asked): %q, want %q", got['C'], want)
	}
	if want := []string{"{client_addr}", "192.0.2.1", "{mail_addr}", "a@b", "{auth_type}", "PLAIN"}; !reflect.DeepEqual(got['M'], want) {
		t.Errorf("mail (asked): %q, want %q", got['M'], want)
	}
	l := logs.String()
	if n := strings.Count(l, "macro={nobody}"); n != 1 {
		t.Errorf("%d warnings for {nobody}, want 1:\n%s", n, l)
	}
	if !strings.Contains(l, "milter_mail_macros += {nobody}") || !strings.Contains(l, "confMILTER_MACROS_ENVFROM") {
		t.Errorf("warning does not name the MTA settings:\n%s", l)
	}
	if strings.Contains(l, "macro={auth_type}") || strings.Contains(l, "macro={client_addr}") {
		t.Errorf("warning for a provided macro:\n%s", l)
	}
}
