// breaker_test.go: the circuit breaker fails fast while a backend is down
// and lets one probe through once the period is over.

package milter

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/breaker"
	"github.com/mailmux/mailmux/internal/testmilter"
	"github.com/mailmux/mailmux/pmult"
)

func TestBreaker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := New(Config{Name: "down", Network: "tcp", Address: addr, ConnectTimeout: time.Second})
	ctx := context.Background()
	if _, err := b.Open(ctx, pmult.OpenInfo{}); err == nil || errors.Is(err, pmult.ErrDown) {
		t.Fatalf("first open: %v, want a connect error", err)
	}
	if _, err := b.Open(ctx, pmult.OpenInfo{}); !errors.Is(err, pmult.ErrDown) {
		t.Fatalf("second open: %v, want ErrDown", err)
	}
	// The backend comes up; after the down period one probe succeeds.
	m := &testmilter.Server{}
	if _, err := m.Listen("tcp", addr); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	time.Sleep(breaker.MinDown + 100*time.Millisecond)
	s, err := b.Open(ctx, pmult.OpenInfo{})
	if err != nil {
		t.Fatalf("open after recovery: %v", err)
	}
	s.Close()
	if s, err := b.Open(ctx, pmult.OpenInfo{}); err != nil {
		t.Fatalf("open when up: %v", err)
	} else {
		s.Close()
	}
}
