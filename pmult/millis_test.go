package pmult

import (
	"testing"
	"time"
)

func TestAppendMillis(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                          "0.000ms",
		-time.Second:               "0.000ms",
		122 * time.Microsecond:     "0.122ms",
		122499 * time.Nanosecond:   "0.122ms",
		122500 * time.Nanosecond:   "0.123ms",
		999 * time.Microsecond:     "0.999ms",
		999600 * time.Nanosecond:   "1.0ms",
		2200 * time.Microsecond:    "2.2ms",
		3249 * time.Microsecond:    "3.2ms",
		99940 * time.Microsecond:   "99.9ms",
		99960 * time.Microsecond:   "100ms",
		20 * time.Second:           "20000ms",
		1234567 * time.Microsecond: "1235ms",
	} {
		if got := string(appendMillis(nil, d)); got != want {
			t.Errorf("appendMillis(%v) = %q, want %q", d, got, want)
		}
	}
}
