package service

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/adapters/meta1"
	adapter "github.com/mailmux/mailmux/adapters/milter"
	"github.com/mailmux/mailmux/pmult"
)

// TestMTAConnectionsEveryFront: pmult_mta_connections counts the open
// connections of every front (it counted the milter front's alone), and
// pmult_front_connections{front} each front's.
func TestMTAConnectionsEveryFront(t *testing.T) {
	cfg := parseSmtpConfig(t, "[smtp]\nlisten = [\"inet:127.0.0.1:10025\"]\nnext_hop = \"inet:127.0.0.1:10026\"\n")
	ssrv, err := smtpFront(cfg, pmult.NewSwitch(&pmult.Engine{}), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); ssrv.Serve(ln) }()
	defer func() { ssrv.Shutdown(context.Background()); <-done }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	greeting, err := bufio.NewReader(c).ReadString('\n') // the session has begun
	if err != nil || !strings.HasPrefix(greeting, "220") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	var b strings.Builder
	writeFrontConns(&b, runningFronts(&adapter.Server{}, &meta1.Server{}, ssrv, cfg))
	for _, want := range []string{
		"pmult_mta_connections 1\n",
		`pmult_front_connections{front="milter"} 0` + "\n",
		`pmult_front_connections{front="smtp"} 1` + "\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), `front="meta1"`) {
		t.Errorf("meta1 counted without a listener:\n%s", b.String())
	}
}
