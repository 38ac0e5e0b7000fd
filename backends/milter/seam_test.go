// seam_test.go: what the engine leaves to the milter backend: body chunks
// of any size go out in packets of at most 65535 bytes, macro sets get
// their command letter from their kind, and the filter's macro lists
// become lists.

package milter

import (
	"bytes"
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// A body chunk over 65535 bytes (the engine replays a replaced body
// whole) reaches the filter in packets of 65535 bytes at most, each
// answered before the next where the filter answers body chunks.
func TestBodyRechunked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto mp.Protocol
	}{
		{"answered", 0},
		{"no reply (NR_BODY)", mp.ProtoNRBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var sizes []int
			var body []byte
			m := &testmilter.Server{Protocol: tc.proto, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
				if p.Code == mp.CmdBody {
					mu.Lock()
					sizes = append(sizes, len(p.Data))
					body = append(body, p.Data...)
					mu.Unlock()
				}
				return nil
			}}
			a, err := m.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Stop()
			b := New(Config{Name: "f", Network: "tcp", Address: a.String()})
			ctx := context.Background()
			s, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6}})
			if err != nil {
				t.Fatal(err)
			}
			big := bytes.Repeat([]byte("0123456789abcde\n"), 10000) // 160000 bytes
			if _, err := s.Handle(ctx, &pmult.Event{Kind: pmult.KindBody, Chunk: big}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Handle(ctx, &pmult.Event{Kind: pmult.KindEOM}); err != nil { // the filter has read the body
				t.Fatal(err)
			}
			s.Close()
			mu.Lock()
			defer mu.Unlock()
			if want := []int{65535, 65535, 160000 - 2*65535}; !reflect.DeepEqual(sizes, want) || !bytes.Equal(body, big) {
				t.Errorf("filter got chunks %v (body equal %v), want %v", sizes, bytes.Equal(body, big), want)
			}
		})
	}
}

// Macro sets go out with the command letter of their kind; the filter's
// lists are split into names (spaces, commas, tabs).
func TestMacroLettersAndLists(t *testing.T) {
	var mu sync.Mutex
	var letters []byte
	m := &testmilter.Server{
		Actions:  mp.ActSetSymList,
		SymLists: []mp.SymList{{Stage: mp.StageEnvFrom, Macros: "i,{mail_addr}\t{auth_authen}"}, {Stage: mp.StageEOH, Macros: "j"}},
		Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdMacro {
				if mc, err := mp.ParseMacro(p.Data); err == nil {
					mu.Lock()
					letters = append(letters, mc.Cmd)
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
	b := New(Config{Name: "f", Network: "tcp", Address: a.String()})
	ctx := context.Background()
	s, err := b.Open(ctx, pmult.OpenInfo{Offer: pmult.Offer{Version: 6, SymList: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[pmult.Kind][]string{pmult.KindMail: {"i", "{mail_addr}", "{auth_authen}"}, pmult.KindEOH: {"j"}}
	if got := s.Caps().Macros; !reflect.DeepEqual(got, want) {
		t.Errorf("Caps.Macros = %q, want %q", got, want)
	}
	for _, ev := range []*pmult.Event{
		{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.1",
			Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"j", "mx"}}}},
		{Kind: pmult.KindMail, Args: []string{"<a@b>"}, Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q1"}}}},
		{Kind: pmult.KindEOM, Macros: []pmult.MacroSet{{For: pmult.KindEOM, Pairs: []string{"i", "Q1"}},
			{For: pmult.KindNone, Pairs: []string{"x", "y"}}}},
	} {
		if _, err := s.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	if string(letters) != "CME" {
		t.Errorf("macro packets for %q, want CME (none for a set of no kind)", letters)
	}
}
