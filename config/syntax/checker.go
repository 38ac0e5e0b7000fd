// checker.go: typed values of one TOML table, as the decoder leaves them in
// an `any` field, checked one key at a time with every error kept.

package syntax

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// ErrPrefix starts the errors of ParseAddress, ParseDuration and
// Duration; config.FieldError drops it from the errors it wraps.
const ErrPrefix = "config: "

// KeyError is one bad value: the key it is under (e.g. "on_failure",
// "listen[1]") and what is wrong with it.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string {
	if e.Key == "" {
		return e.Err.Error()
	}
	return e.Key + ": " + strings.TrimPrefix(e.Err.Error(), ErrPrefix)
}

// Unwrap returns the underlying error.
func (e *KeyError) Unwrap() error { return e.Err }

// Checker reads the values of one table. Each method returns the value
// of a key, or its default when the key is absent or bad; a bad value adds
// a *KeyError to Errs. The zero value is ready.
type Checker struct {
	Errs []error
}

// Fail records an error for key.
func (c *Checker) Fail(key string, err error) {
	c.Errs = append(c.Errs, &KeyError{Key: key, Err: err})
}

// String returns a string value, "" when absent.
func (c *Checker) String(key string, val any) string {
	switch x := val.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		c.Fail(key, WantErr("a string", val))
		return ""
	}
}

// Enum returns a string value that must be one of allowed (any case,
// returned lower-cased), def when absent or empty. what names the kind of
// value in the message.
func (c *Checker) Enum(key string, val any, def, what string, allowed ...string) string {
	orig := c.String(key, val)
	str := strings.ToLower(strings.TrimSpace(orig))
	if str == "" {
		return def
	}
	for _, a := range allowed {
		if str == a {
			return str
		}
	}
	c.Fail(key, fmt.Errorf("unknown %s %q (want %s)", what, orig, OrList(allowed)))
	return def
}

// Int returns an integer value in [lo, hi], def when absent or wrong.
func (c *Checker) Int(key string, val any, def, lo, hi int) int {
	if val == nil {
		return def
	}
	n, ok := val.(int64)
	if !ok {
		c.Fail(key, WantErr("an integer", val))
		return def
	}
	switch {
	case n < int64(lo) && hi == math.MaxInt:
		c.Fail(key, fmt.Errorf("%d is too small (minimum %d)", n, lo))
	case n < int64(lo) || n > int64(hi):
		c.Fail(key, fmt.Errorf("%d is out of range (want %d to %d)", n, lo, hi))
	default:
		return int(n)
	}
	return def
}

// Bool returns a boolean value, false when absent or wrong.
func (c *Checker) Bool(key string, val any) bool {
	switch x := val.(type) {
	case nil:
		return false
	case bool:
		return x
	default:
		c.Fail(key, WantErr("true or false", val))
		return false
	}
}

// Timeout returns a positive duration (see Duration for the forms), def
// when absent or wrong.
func (c *Checker) Timeout(key string, val any, def time.Duration) Duration {
	if val == nil {
		return Duration{def}
	}
	var d Duration
	if err := d.UnmarshalTOML(val); err != nil {
		c.Fail(key, err)
		return Duration{def}
	}
	if d.Duration <= 0 {
		c.Fail(key, fmt.Errorf("must be positive (leave it out for the default, %s)", def))
		return Duration{def}
	}
	return d
}

// WantErr says a value has the wrong TOML type.
func WantErr(want string, val any) error {
	return fmt.Errorf("want %s, not a TOML %s", want, TOMLType(val))
}

// TOMLType names the TOML type of a decoded value.
func TOMLType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	case time.Time:
		return "date-time"
	default:
		return fmt.Sprintf("value (%T)", v)
	}
}

// OrList joins words as "a, b or c".
func OrList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// Suggest returns the known key closest to word when it is close enough
// to be a typo (including mailfromd's dashes for underscores), else "".
func Suggest(word string, known []string) string {
	w := strings.ReplaceAll(strings.ToLower(word), "-", "_")
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(w, k); d < bestDist && d < len(w) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment) between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
