// man_test.go: pmult(8) documents every [smtp] key.

package dist

import (
	"os"
	"reflect"
	"regexp"
	"testing"

	"github.com/mailmux/mailmux/config"
)

// TestManSmtpKeys checks that the [smtp] section of dist/man/pmult.8
// names every key of config.Smtp (its toml tags) as a bold key (.B or
// .BR), so a new [smtp] key cannot go undocumented.
func TestManSmtpKeys(t *testing.T) {
	b, err := os.ReadFile("man/pmult.8")
	if err != nil {
		t.Fatal(err)
	}
	sec := regexp.MustCompile(`(?s)\n\.SS \[smtp\]\n(.*?)\n\.S[SH] `).FindSubmatch(b)
	if sec == nil {
		t.Fatal("pmult.8 has no .SS [smtp] section")
	}
	typ := reflect.TypeOf(config.Smtp{})
	for i := 0; i < typ.NumField(); i++ {
		key := typ.Field(i).Tag.Get("toml")
		if key == "" || key == "-" {
			continue
		}
		// .BR key " (...)" or .BR ", " key " (...)", or .B key.
		re := regexp.MustCompile(`(?m)^\.BR? (?:.*" )?` + regexp.QuoteMeta(key) + `(?: |$)`)
		if !re.Match(sec[1]) {
			t.Errorf("pmult.8 [smtp]: key %s is not documented", key)
		}
	}
}
