package bench

import (
	"testing"
	"time"
)

// TestCompareFronts runs the comparison briefly: both fronts carry
// messages through the same null backends without errors.
func TestCompareFronts(t *testing.T) {
	null := nullBackends(t)
	c, err := CompareFronts(null.Addrs[:3], 2, 400*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.Errors != 0 || c.SMTPRate == 0 || c.NoHopRate == 0 || c.MilterRate == 0 {
		t.Fatalf("%+v", c)
	}
	t.Logf("SMTP %.0f/s (without the next hop %.0f/s), milter %.0f/s: %.2fx (%.2fx)", c.SMTPRate, c.NoHopRate, c.MilterRate,
		c.Ratio(), c.NoHopRatio())
}

func BenchmarkMessageSMTPFront3(b *testing.B) {
	null := nullBackends(b)
	f, err := StartSMTPFront(null.Addrs[:3], true)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Stop()
	for b.Loop() {
		if err := SMTPMessage(f.Addr); err != nil {
			b.Fatal(err)
		}
	}
}
