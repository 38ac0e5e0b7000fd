// limits_test.go: max_sessions against connections that never negotiate.

package milter

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// With max_sessions silent connections (no OPTNEG) holding every slot, a
// real MTA session is still served: the oldest silent one is closed.
func TestSilentConnectionsDoNotStarveSessions(t *testing.T) {
	lb := &logBuf{}
	log := slog.New(slog.NewTextHandler(lb, nil))
	srv := &Server{Engine: &pmult.Engine{Log: log}, Log: log, MaxSessions: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	addr := ln.Addr().String()
	for i := 1; i <= 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		for deadline := time.Now().Add(10 * time.Second); srv.ActiveSessions() < i; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("silent connection not accepted")
			}
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mp.WritePacket(c, mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: mp.ActAllMask, Protocol: allProto}.Append(nil))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := mp.NewReader(c, 1<<20).ReadPacket()
	if err != nil || p.Code != mp.RespOptNeg {
		t.Fatalf("real session behind two silent connections: %v %q; log:\n%s", err, p.Code, lb)
	}
}
