// duration.go: time intervals written as Go durations ("1m30s"), as a
// bare number of seconds ("300") or the mailfromd way ("2 hours 35 seconds"),
// and the Duration type that lets TOML hold any of them.

package syntax

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// unitLength returns the length of a unit word of interval syntax. Months
// and years are left out on purpose: they have no fixed length.
func unitLength(word string) (time.Duration, bool) {
	switch strings.ToLower(word) {
	case "ms", "msec", "msecs", "millisecond", "milliseconds":
		return time.Millisecond, true
	case "s", "sec", "secs", "second", "seconds":
		return time.Second, true
	case "m", "min", "mins", "minute", "minutes":
		return time.Minute, true
	case "h", "hr", "hrs", "hour", "hours":
		return time.Hour, true
	case "d", "day", "days":
		return 24 * time.Hour, true
	case "w", "week", "weeks":
		return 7 * 24 * time.Hour, true
	}
	return 0, false
}

// ParseDuration parses a non-negative time interval written as
//
//   - a Go duration: "10s", "1m30s", "250ms", "1.5h";
//   - a bare integer, meaning seconds: "300";
//   - mailfromd's interval: pairs of number and unit in any order,
//     "2 hours 35 seconds", "1 day 2 hours", "30 sec", "10min", "1h 30m".
//     Units are case-insensitive: ms/msec/millisecond(s), s/sec/second(s),
//     m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s); a number without
//     a unit means seconds. Numbers may have a fraction ("1.5 hours") and
//     pairs may be separated by spaces or commas.
//
// Negative intervals and intervals beyond time.Duration's range are errors.
func ParseDuration(s string) (time.Duration, error) {
	fail := func(format string, args ...any) (time.Duration, error) {
		return 0, &parseError{kind: "duration", input: s, msg: fmt.Sprintf(format, args...)}
	}
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return fail("empty")
	case t[0] == '-':
		return fail("negative durations are not allowed")
	case isDigits(t):
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return fail("too large")
		}
		return time.Duration(n) * time.Second, nil
	}
	if d, err := time.ParseDuration(t); err == nil {
		if d < 0 {
			return fail("negative durations are not allowed")
		}
		return d, nil
	}
	d, msg := parseInterval(t)
	if msg != "" {
		return fail("%s", msg)
	}
	return d, nil
}

// parseInterval parses mailfromd's "N unit N unit ..." syntax. It returns
// a message on error.
func parseInterval(t string) (time.Duration, string) {
	var total time.Duration
	i, pairs := 0, 0
	skip := func() {
		for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r' || t[i] == ',') {
			i++
		}
	}
	for {
		skip()
		if i == len(t) {
			break
		}
		start := i
		for i < len(t) && '0' <= t[i] && t[i] <= '9' {
			i++
		}
		whole, frac := t[start:i], ""
		if i < len(t) && t[i] == '.' {
			i++
			fs := i
			for i < len(t) && '0' <= t[i] && t[i] <= '9' {
				i++
			}
			frac = t[fs:i]
		}
		if whole == "" && frac == "" {
			return 0, fmt.Sprintf("expected a number at %q (want e.g. \"10s\", \"300\" or \"2 hours 35 seconds\")", t[start:])
		}
		skip()
		us := i
		for i < len(t) && ('a' <= t[i] && t[i] <= 'z' || 'A' <= t[i] && t[i] <= 'Z') {
			i++
		}
		unit := time.Second
		if word := t[us:i]; word != "" {
			u, ok := unitLength(word)
			if !ok {
				return 0, fmt.Sprintf("unknown unit %q (want seconds, minutes, hours, days or weeks)", t[us:i])
			}
			unit = u
		}
		if i < len(t) && !strings.ContainsRune(" \t\n\r,0123456789", rune(t[i])) {
			return 0, fmt.Sprintf("unexpected %q at %q", t[i], t[i:])
		}
		v, ok := scale(whole, frac, unit)
		if !ok || total > math.MaxInt64-v {
			return 0, "too large"
		}
		total += v
		pairs++
	}
	if pairs == 0 {
		return 0, "empty"
	}
	return total, ""
}

// scale returns whole.frac units, false on overflow.
func scale(whole, frac string, unit time.Duration) (time.Duration, bool) {
	var v int64
	for i := 0; i < len(whole); i++ {
		if v > (math.MaxInt64-9)/10 {
			return 0, false
		}
		v = v*10 + int64(whole[i]-'0')
	}
	if v > math.MaxInt64/int64(unit) {
		return 0, false
	}
	v *= int64(unit)
	// The fraction as Go's time.ParseDuration does it: digits that would
	// overflow are dropped, they are below any unit's precision anyway.
	var f int64
	sc := 1.0
	for i := 0; i < len(frac); i++ {
		if f > (math.MaxInt64-9)/10 {
			break
		}
		f = f*10 + int64(frac[i]-'0')
		sc *= 10
	}
	if f > 0 {
		add := int64(float64(f) * (float64(unit) / sc))
		if v > math.MaxInt64-add {
			return 0, false
		}
		v += add
	}
	return time.Duration(v), true
}

// Duration is a time.Duration that reads itself from text in any form
// ParseDuration accepts, and from a TOML integer meaning seconds:
//
//	read_timeout = "10s"
//	eom_timeout  = "5 minutes"
//	connect_timeout = 300
type Duration struct {
	time.Duration
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler, in Go syntax ("2h0m35s").
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// UnmarshalTOML implements toml.Unmarshaler: a TOML string is parsed with
// ParseDuration, a TOML integer is a number of seconds.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.UnmarshalText([]byte(v))
	case int64:
		if v < 0 {
			return &parseError{kind: "duration", input: strconv.FormatInt(v, 10), msg: "negative durations are not allowed"}
		}
		if v > math.MaxInt64/int64(time.Second) {
			return &parseError{kind: "duration", input: strconv.FormatInt(v, 10), msg: "too large"}
		}
		d.Duration = time.Duration(v) * time.Second
		return nil
	default:
		return fmt.Errorf(ErrPrefix+"duration: want a string such as \"10s\" or \"2 hours 35 seconds\", or an integer number of seconds, not a TOML %s", TOMLType(v))
	}
}
