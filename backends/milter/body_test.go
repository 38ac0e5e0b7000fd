// body_test.go: a backend's replacement body is capped (max_body).

package milter

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// replacer answers EOM with chunks REPLBODY packets of 65535 bytes each
// (libmilter's chunk size), then CONTINUE.
func replacer(t *testing.T, chunks int) *Backend {
	t.Helper()
	m := &testmilter.Server{Actions: mp.ActChangeBody, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code != mp.CmdEOB {
			return nil
		}
		var ps []mp.Packet
		for i := range chunks {
			ps = append(ps, testmilter.Reply(mp.RespReplBody, bytes.Repeat([]byte{byte('a' + i%26)}, 65535)))
		}
		return append(ps, mp.Packet{Code: mp.RespContinue})
	}}
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return New(Config{Name: "replacer", Network: "tcp", Address: a.String(), MaxBody: 100000})
}

func TestReplacementBodyCapped(t *testing.T) {
	offer := pmult.Offer{Version: 6, Actions: pmult.ActModify}
	t.Run("under the limit", func(t *testing.T) {
		b := replacer(t, 1)
		s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindEOM})
		if err != nil || len(r.Edits) != 1 || len(r.Edits[0].Body) != 65535 {
			t.Fatalf("EOM %v, %d edits", err, len(r.Edits))
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		b := replacer(t, 40) // 2.6 MB offered, 100000 bytes allowed
		s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindEOM})
		if err == nil {
			t.Fatalf("EOM accepted a %d-byte replacement body over max_body 100000", len(r.Edits[0].Body))
		}
		// It stops at the packet that goes over: the second.
		for _, want := range []string{"max_body", "100000", "131070 bytes so far"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if len(r.Edits) != 0 {
			t.Errorf("edits returned with the error: %d", len(r.Edits))
		}
		// The session is broken: closed, not kept (no more of it is read).
		if !s.(*session).broken {
			t.Error("session not marked broken")
		}
		s.Close()
	})
	t.Run("several packets joined", func(t *testing.T) {
		b := replacer(t, 3)
		b.cfg.MaxBody = 3 * 65535
		s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindEOM})
		if err != nil || len(r.Edits) != 1 {
			t.Fatalf("EOM %v, %d edits", err, len(r.Edits))
		}
		body := r.Edits[0].Body
		want := append(append(bytes.Repeat([]byte("a"), 65535), bytes.Repeat([]byte("b"), 65535)...), bytes.Repeat([]byte("c"), 65535)...)
		if !bytes.Equal(body, want) || cap(body) != len(want) {
			t.Errorf("body %d bytes (cap %d), equal %v; want %d bytes in one exact allocation", len(body), cap(body), bytes.Equal(body, want), len(want))
		}
	})
}
