// perf_test.go: the MTA is let off the replies to headers, EOH and body
// chunks unless Server.WaitContent.

package milter

import (
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// A backend answering everything: by default pmult grants the MTA's
// NR_HDR, NR_EOH and NR_BODY (not the envelope's) and still gives a
// header's reject at EOM; with WaitContent it grants none of them.
func TestWaitContent(t *testing.T) {
	content := mp.ProtoNRHeader | mp.ProtoNREOH | mp.ProtoNRBody
	for _, wait := range []bool{false, true} {
		b := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdHeader {
				if h, _ := mp.ParseHeader(p.Code, p.Data); h.Name == "X-Bad" {
					return []mp.Packet{{Code: mp.RespReject}}
				}
			}
			return nil
		}}
		addr, _, _ := startMuxWith(t, false, func(s *Server) { s.WaitContent = wait }, slot{m: b})
		m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
		got := m.ng.Protocol & content
		if (!wait && got != content) || (wait && got != 0) {
			t.Fatalf("WaitContent %v: content NR bits 0x%x", wait, uint32(got))
		}
		if m.ng.Protocol&(mp.ProtoNRConnect|mp.ProtoNRMail|mp.ProtoNRRcpt) != 0 {
			t.Errorf("WaitContent %v: envelope NR bits granted", wait)
		}
		envelope(m)
		m.cmd(mp.CmdRcpt, s("<b@example.com>"))
		m.cmd(mp.CmdData)
		r := m.cmd(mp.CmdHeader, s("X-Bad", " yes"))
		if wait && codes(r) != "r" {
			t.Errorf("WaitContent: reply to the header %q, want r", codes(r))
		}
		m.cmd(mp.CmdEOH)
		m.cmd(mp.CmdBody, []byte("x\r\n"))
		if r := m.cmd(mp.CmdEOB); codes(r) != "r" {
			t.Errorf("WaitContent %v: reply at EOM %q, want the header's reject", wait, codes(r))
		}
	}
}
