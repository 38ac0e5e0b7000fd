// shutdown_test.go: what Run says when it stops.

package service

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// The shutdown line counts the open sessions of every front, the SMTP
// front's too (it counted the milter front's alone).
func TestShutdownCountsEveryFront(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := parseSmtpConfig(t, "shutdown_timeout = \"5s\"\n[milter]\nlisten = []\n[smtp]\nlisten = [\"inet:"+addr+
		"\"]\nnext_hop = \"inet:127.0.0.1:9\"\n")
	var logs pmulttest.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Run(ctx, Options{Config: cfg, Log: pmulttest.NewLog(&logs)}) }()
	var nc net.Conn
	for nc == nil {
		if nc, err = net.Dial("tcp", addr); err != nil {
			select {
			case code := <-done:
				t.Fatalf("Run ended (%d) before listening:\n%s", code, logs.String())
			default:
			}
			nc = nil
		}
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q %v", l, err)
	}
	cancel()
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "421 ") {
		t.Errorf("idle client at shutdown got %q, want 421", l)
	}
	if code := <-done; code != ExitOK {
		t.Errorf("exit %d", code)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "shutting down") {
			line = l
		}
	}
	if !strings.Contains(line, "sessions=1") {
		t.Errorf("shutdown line %q, want sessions=1:\n%s", line, logs.String())
	}
}
