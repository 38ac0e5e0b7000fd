// swaks.go: the one swaks runner behind every peer's Send.

package realpeer

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// swaks runs swaks --server server --timeout 60, then "--from
// sender@example.org" and "--to rcpt@example.com" unless args give
// --from/-f or --to/-t, then args, for at most wait. It returns the
// transcript (stdout and stderr) and a non-nil error when swaks exits
// non-zero, as it does when the server rejects the message or a
// recipient.
func swaks(t testing.TB, server string, wait time.Duration, args []string) (string, error) {
	t.Helper()
	bin := mustTool(t, "swaks")
	full := []string{"--server", server, "--timeout", "60"}
	if !hasFlag(args, "--from", "-f") {
		full = append(full, "--from", "sender@example.org")
	}
	if !hasFlag(args, "--to", "-t") {
		full = append(full, "--to", "rcpt@example.com")
	}
	full = append(full, args...)
	r := runCmd(wait, "", bin, full...)
	out := r.stdout + r.stderr
	if r.err != nil {
		return out, fmt.Errorf("swaks %s: %w (exit %d)", strings.Join(full, " "), r.err, r.exitCode)
	}
	return out, nil
}
