// duration_test.go: tests of ParseDuration (Go, bare seconds and mailfromd
// interval syntax) and of the Duration type's text and TOML decoding.

package syntax

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		// Go syntax.
		{"10s", 10 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"1.5h", 90 * time.Minute},
		{"0s", 0},
		// Bare seconds.
		{"300", 300 * time.Second},
		{"0", 0},
		{" 42 ", 42 * time.Second},
		// mailfromd intervals.
		{"2 hours 35 seconds", 2*time.Hour + 35*time.Second},
		{"1 hour", time.Hour},
		{"5 minutes", 5 * time.Minute},
		{"1 day 2 hours", 26 * time.Hour},
		{"30 sec", 30 * time.Second},
		{"10 min", 10 * time.Minute},
		{"1h 30m", 90 * time.Minute},
		{"2hours", 2 * time.Hour},
		{"2hours35seconds", 2*time.Hour + 35*time.Second},
		{"1 HOUR 1 Minute", time.Hour + time.Minute},
		{"35 seconds 2 hours", 2*time.Hour + 35*time.Second},
		{"1 week", 7 * 24 * time.Hour},
		{"2 weeks 1 d", 15 * 24 * time.Hour},
		{"3 secs", 3 * time.Second},
		{"1 hour 30", time.Hour + 30*time.Second},
		{"1.5 hours", 90 * time.Minute},
		{"1 hour, 5 minutes", time.Hour + 5*time.Minute},
		{"500 ms", 500 * time.Millisecond},
		{"2 hrs", 2 * time.Hour},
		{"1\thour\n2\tmin", time.Hour + 2*time.Minute},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if d, _ := ParseDuration("2 hours 35 seconds"); d.String() != "2h0m35s" {
		t.Errorf(`"2 hours 35 seconds" = %v, want 2h0m35s`, d)
	}
}

func TestParseDurationErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `config: duration "": empty`},
		{"  ", `empty`},
		{"-5s", `config: duration "-5s": negative durations are not allowed`},
		{"-5", `negative`},
		{"- 5 minutes", `negative`},
		{"abc", `expected a number at "abc"`},
		{"10 fortnights", `unknown unit "fortnights"`},
		{"1 year", `unknown unit "year"`},
		{"2 months", `unknown unit "months"`},
		{"5 hours and 3 minutes", `expected a number at "and 3 minutes"`},
		{"99999999999999999999", `too large`},
		{"9999999999999 hours", `too large`},
		{"2562047 hours 3600 seconds", `too large`},
		{"1 hour 5x", `unknown unit "x"`},
		{"1..5 h", `unexpected '.' at ".5 h"`},
		{"1h-5m", `unexpected '-'`},
		{",", `empty`},
	}
	for _, tt := range tests {
		d, err := ParseDuration(tt.in)
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want error containing %q", tt.in, d, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDuration(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("2 hours 35 seconds")); err != nil {
		t.Fatal(err)
	}
	b, err := d.MarshalText()
	if err != nil || string(b) != "2h0m35s" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var e Duration
	if err := e.UnmarshalText(b); err != nil || e != d {
		t.Fatalf("round trip: %v, %v", e, err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Fatal("UnmarshalText(soon) succeeded")
	}
}

func TestDurationTOML(t *testing.T) {
	var v struct {
		A, B, C, D Duration
	}
	const doc = `
A = "2 hours 35 seconds"
B = "10s"
C = 300
D = "1m"
`
	if _, err := toml.Decode(doc, &v); err != nil {
		t.Fatal(err)
	}
	if v.A.Duration != 2*time.Hour+35*time.Second || v.B.Duration != 10*time.Second ||
		v.C.Duration != 300*time.Second || v.D.Duration != time.Minute {
		t.Errorf("decoded %+v", v)
	}
	for _, bad := range []string{`A = -1`, `A = 1.5`, `A = true`, `A = "-1s"`, `A = 9223372036854775807`, `A = [1]`} {
		if _, err := toml.Decode(bad, &v); err == nil {
			t.Errorf("decoding %q succeeded", bad)
		}
	}
	// Encoding writes the Go form, which decodes back.
	var sb strings.Builder
	if err := toml.NewEncoder(&sb).Encode(struct{ T Duration }{Duration{90 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), `T = "1m30s"`) {
		t.Errorf("encoded %q", sb.String())
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{
		"10s", "300", "2 hours 35 seconds", "1h 30m", "1.5 hours", "-1s", "9999999999999 hours",
		"1 hour, 5", ".5s", "1e5", "2562047h47m16.854775807s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: duration ") {
				t.Fatalf("error %q lacks prefix", err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		e, err := ParseDuration(d.String())
		if err != nil || e != d {
			t.Fatalf("ParseDuration(%q) = %v; reparse of %q = %v, %v", s, d, d.String(), e, err)
		}
	})
}

func TestScaleOverflow(t *testing.T) {
	if _, ok := scale("9223372037", "", time.Second); ok {
		t.Error("9223372037s did not overflow")
	}
	if v, ok := scale("9223372036", "", time.Second); !ok || v != 9223372036*time.Second {
		t.Errorf("9223372036s = %v, %v", v, ok)
	}
	if v, ok := scale("0", "5", time.Hour); !ok || v != 30*time.Minute {
		t.Errorf("0.5h = %v, %v", v, ok)
	}
	if _, ok := scale(strings.Repeat("9", 30), "", time.Millisecond); ok {
		t.Error("30 nines did not overflow")
	}
}
