// noreply_test.go: our mtasim honours the NR_* flags a milter negotiates:
// it does not wait for replies the milter was let off.

package mtasim

import (
	"strings"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// A milter negotiating NR_HDR, NR_EOH and NR_BODY answers none of those
// events: the message must still be accepted at end of data with the
// milter's header edit, every content event must have reached it, and
// none may have got a reply. Waiting for such a reply would run into the
// read timeout (F=T: 451 instead of 250).
func TestNoReplyHonoured(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	nr := mp.ProtoNRHeader | mp.ProtoNREOH | mp.ProtoNRBody
	srv := &testmilter.Server{Actions: mp.ActAllMask, Protocol: nr, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		mu.Lock()
		defer mu.Unlock()
		switch p.Code {
		case mp.CmdHeader, mp.CmdEOH, mp.CmdBody:
			seen = append(seen, mp.CmdName(p.Code))
		case mp.CmdEOB:
			seen = append(seen, mp.CmdName(p.Code))
			return []mp.Packet{{Code: mp.RespAddHeader, Data: []byte("X-NR\x00honoured\x00")}, {Code: mp.RespAccept}}
		}
		return nil
	}}
	cfg := startTM(t, srv, "F=T, T=R:10s")
	if got := srv.Protocol & nr; got != nr {
		t.Fatalf("test milter asks 0x%x", uint32(got))
	}
	out, err := runScript(t, cfg, basicScript)
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(out, "250") || strings.Contains(out, "451") {
		t.Errorf("transcript:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := 2 + 1 + 1 + 1; len(seen) != want {
		t.Errorf("milter saw %q, want 2 headers, EOH, body, EOB", seen)
	}
}
