// perf_test.go: the MTA is let off the replies to headers, EOH and body
// chunks unless Server.DeferContent says otherwise.

package milter

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// A backend answering everything: pmult grants the MTA's NR_HDR, NR_EOH
// and NR_BODY (not the envelope's) and still gives a header's reject at
// EOM, by default (auto) and with DeferOn; it grants none of them with
// DeferOff, or by default to an offer known to wait for them (mailfromd's
// mtasim 8.15: version 0x01000000, actions 0xff), which then gets the
// reject in reply to the header itself.
func TestDeferContent(t *testing.T) {
	content := mp.ProtoNRHeader | mp.ProtoNREOH | mp.ProtoNRBody
	const mtasim815 = 0x01000000
	for _, tc := range []struct {
		mode    DeferContent
		version uint32
		actions mp.Action
		wait    bool
	}{
		{DeferAuto, 6, mp.ActAllMask, false},
		{DeferAuto, mtasim815, 0xff, true},
		{DeferOn, mtasim815, 0xff, false},
		{DeferOff, 6, mp.ActAllMask, true},
	} {
		name := fmt.Sprintf("%v, version 0x%x", tc.mode, tc.version)
		b := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdHeader {
				if h, _ := mp.ParseHeader(p.Code, p.Data); h.Name == "X-Bad" {
					return []mp.Packet{{Code: mp.RespReject}}
				}
			}
			return nil
		}}
		addr, _, _ := startMuxWith(t, false, func(s *Server) { s.DeferContent = tc.mode }, slot{m: b})
		m := dialMTA(t, addr, tc.version, tc.actions, allProto)
		got := m.ng.Protocol & content
		if (!tc.wait && got != content) || (tc.wait && got != 0) {
			t.Fatalf("%s: content NR bits 0x%x", name, uint32(got))
		}
		if m.ng.Protocol&(mp.ProtoNRConnect|mp.ProtoNRMail|mp.ProtoNRRcpt) != 0 {
			t.Errorf("%s: envelope NR bits granted", name)
		}
		envelope(m)
		m.cmd(mp.CmdRcpt, s("<b@example.com>"))
		m.cmd(mp.CmdData)
		r := m.cmd(mp.CmdHeader, s("X-Bad", " yes"))
		if tc.wait && codes(r) != "r" {
			t.Errorf("%s: reply to the header %q, want r", name, codes(r))
		}
		m.cmd(mp.CmdEOH)
		m.cmd(mp.CmdBody, []byte("x\r\n"))
		if r := m.cmd(mp.CmdEOB); codes(r) != "r" {
			t.Errorf("%s: reply at EOM %q, want the header's reject", name, codes(r))
		}
	}
}

// Content posted ahead to several live backends reaches all of them
// before any answer is awaited: b1 answers its header only once b2 has
// its own (in the buggy order b2 got it only after b1's answer: b1
// timed out, tempfail).
func TestPostedAheadReachesEveryBackend(t *testing.T) {
	b2got := make(chan struct{})
	var once sync.Once
	b1 := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdHeader {
			select {
			case <-b2got:
			case <-time.After(5 * time.Second):
				return []mp.Packet{{Code: mp.RespTempfail}}
			}
		}
		return nil
	}}
	b2 := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdHeader {
			once.Do(func() { close(b2got) })
		}
		return nil
	}}
	addr, _ := startMux(t, false, slot{m: b1, read: 10 * time.Second}, slot{m: b2, read: 10 * time.Second})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	toEOH(m)
	m.cmd(mp.CmdBody, []byte("x\r\n"))
	if r := m.cmd(mp.CmdEOB); codes(r) != "c" {
		t.Fatalf("reply at EOM %q, want c", codes(r))
	}
}
