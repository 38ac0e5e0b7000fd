// sockets_test.go: the client over unix, inet and inet6 sockets.

package milter

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

func TestSocketFamilies(t *testing.T) {
	for _, c := range []struct{ network, addr string }{
		{"unix", filepath.Join(t.TempDir(), "m.sock")},
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		t.Run(c.network, func(t *testing.T) {
			m := &testmilter.Server{Actions: mp.ActAddHeaders, Handler: func(cn *testmilter.Conn, p mp.Packet) []mp.Packet {
				if p.Code == mp.CmdEOB {
					return []mp.Packet{testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-Net", c.network)), {Code: mp.RespContinue}}
				}
				return nil
			}}
			a, err := m.Listen(c.network, c.addr)
			if err != nil {
				if c.network == "tcp6" {
					t.Fatalf("IPv6 loopback unavailable: %v", err)
				}
				t.Fatal(err)
			}
			defer m.Stop()
			b := New(Config{Network: c.network, Address: a.String()})
			if c.network == "unix" {
				b = New(Config{Network: "unix", Address: a.(*net.UnixAddr).Name})
			}
			s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: pmult.Offer{Actions: pmult.ActModify, LeadingSpace: true}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindEOM})
			if err != nil || len(r.Edits) != 1 || r.Edits[0].Value != " "+c.network {
				t.Fatalf("EOM: %+v %v", r, err)
			}
		})
	}
}
