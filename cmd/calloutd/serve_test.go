package main

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/callout"
)

// brokenListener fails every Accept with a permanent error.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("bad file descriptor") }

// A listener that fails for good ends serveListener with an error naming
// the listen address and the cause (calloutd logged just "serve").
func TestServeListenerNamesTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &callout.Server{Verifier: &callout.Verifier{}}
	err = serveListener(srv, brokenListener{ln}, "inet:127.0.0.1:5555")
	if err == nil || !strings.Contains(err.Error(), "listen inet:127.0.0.1:5555: accepting connections") ||
		!strings.Contains(err.Error(), "bad file descriptor") {
		t.Errorf("error %v: want the address and the cause", err)
	}
}
