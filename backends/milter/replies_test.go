// replies_test.go: reply texts Postfix calls malformed are the backend's
// protocol violation, never forwarded; SMFIR_SKIP is accepted after any
// command, as Postfix accepts it.

package milter

import (
	"context"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// replyServer answers RCPT with one SMFIR_REPLYCODE text.
func replyServer(t *testing.T, text string) *Backend {
	t.Helper()
	m := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdRcpt {
			return []mp.Packet{testmilter.Reply(mp.RespReplyCode, testmilter.Str(text))}
		}
		return nil
	}}
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return New(Config{Name: "replier", Network: "tcp", Address: a.String()})
}

func TestMalformedReplyCode(t *testing.T) {
	for _, c := range []struct {
		text string
		ok   bool
	}{
		{"550 5.7.1 no such user", true},
		{"550-5.7.1 first\r\n550 5.7.1 second", true},
		{"451 greylisted", true},
		{"550 4.7.1 class mismatch (libmilter's smfi_setreply makes it)", false},
		{"550", false},
		{"550-5.7.1 first\r\n551 5.7.1 second", false},
		{"550 5.7.1 first\r\n550 5.7.1 second", false},
	} {
		t.Run(c.text, func(t *testing.T) {
			b := replyServer(t, c.text)
			s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: pmult.Offer{Version: 6}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r, err := s.Handle(context.Background(), &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<a@b>"}})
			if c.ok {
				if err != nil || r.Text != c.text {
					t.Fatalf("reply %+v, %v; want the text %q", r, err, c.text)
				}
				return
			}
			if err == nil {
				t.Fatalf("reply %+v forwarded; want a protocol violation", r)
			}
			short, _, _ := strings.Cut(c.text, "\r")
			short = short[:min(len(short), 20)]
			if msg := err.Error(); !strings.Contains(msg, "protocol violation") || !strings.Contains(msg, short) {
				t.Errorf("error %q should say protocol violation and quote the text", msg)
			}
			if r.Text != "" {
				t.Errorf("text %q returned with the error", r.Text)
			}
		})
	}
}

// SMFIR_SKIP after any command: Skip where more events of the kind can
// follow (RCPT, HELO, header, body chunk, unknown command), Continue where
// none can (the engine clears a Skip at the next kind anyway).
func TestSkipAfterAnyCommand(t *testing.T) {
	m := &testmilter.Server{Protocol: mp.ProtoSkip, Actions: mp.ActAddHeaders, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		switch p.Code {
		case mp.CmdOptNeg, mp.CmdMacro, mp.CmdAbort, mp.CmdQuit:
			return nil
		}
		return []mp.Packet{{Code: mp.RespSkip}}
	}}
	a, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	b := New(Config{Name: "skipper", Network: "tcp", Address: a.String()})
	offer := pmult.Offer{Version: 6, Skip: true, Actions: pmult.ActAddHeaders}
	s, err := b.Open(context.Background(), pmult.OpenInfo{Offer: offer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		ev   pmult.Event
		want pmult.Verdict
	}{
		{pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Port: 25, Address: "192.0.2.1"}, pmult.Continue},
		{pmult.Event{Kind: pmult.KindHelo, Arg: "h"}, pmult.Skip},
		{pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"}}, pmult.Continue},
		{pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<c@d>"}}, pmult.Skip},
		{pmult.Event{Kind: pmult.KindData}, pmult.Continue},
		{pmult.Event{Kind: pmult.KindHeader, Name: "Subject", Value: " x"}, pmult.Skip},
		{pmult.Event{Kind: pmult.KindEOH}, pmult.Continue},
		{pmult.Event{Kind: pmult.KindBody, Chunk: []byte("x\r\n")}, pmult.Skip},
		{pmult.Event{Kind: pmult.KindEOM}, pmult.Continue},
		{pmult.Event{Kind: pmult.KindUnknown, Arg: "XFOO"}, pmult.Skip},
	} {
		r, err := s.Handle(context.Background(), &c.ev)
		if err != nil {
			t.Fatalf("%s: SKIP refused: %v", c.ev.Kind, err)
		}
		if r.Verdict != c.want {
			t.Errorf("%s: verdict %v, want %v", c.ev.Kind, r.Verdict, c.want)
		}
	}
}
