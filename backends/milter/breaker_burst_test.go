// breaker_burst_test.go: the soak's finding, kept as a regression test:
// concurrent opens that were already in flight when a backend failed must
// not each count as one more failure (one burst used to double the down
// period straight to breaker.MaxDown, 30 s: a backend that hung for a moment was
// skipped for 30 s after it came back).

package milter

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/breaker"
	"github.com/mailmux/mailmux/pmult"
)

func TestBreakerBurstOfInFlightFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() { // accepts, never answers OPTNEG: a stopped filter
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	b := New(Config{Name: "x", Network: "tcp", Address: ln.Addr().String(), ConnectTimeout: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for range 20 { // 20 MTA sessions open at once, all before the first failure
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Open(context.Background(), pmult.OpenInfo{Offer: pmult.Offer{Version: 6}})
		}()
	}
	wg.Wait()
	_, err = b.Open(context.Background(), pmult.OpenInfo{Offer: pmult.Offer{Version: 6}})
	if !errors.Is(err, pmult.ErrDown) {
		t.Fatalf("after the burst: %v, want ErrDown", err)
	}
	// One failure episode: the first period (breaker.MinDown, 1s) should apply.
	if !strings.Contains(err.Error(), "retrying in ") || b.brk.State().DownFor > 2*breaker.MinDown {
		t.Fatalf("one burst of %d in-flight failures set the down period to %s (%v)", 20, b.brk.State().DownFor, err)
	}
}
