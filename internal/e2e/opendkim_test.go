// opendkim_test.go: real OpenDKIM, a signer then a verifier, behind
// Postfix: through pmult (serial content: the verifier sees the signer's
// DKIM-Signature and says dkim=pass), through Postfix's own chain (the
// same), and through pmult with content = "parallel" (the verifier sees
// the original message only: no signature, dkim=none).

package e2e

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// TestOpenDKIMSignThenVerify runs one signer (Mode s) and one verifier
// (Mode v, the public key from a TestPublicKeys file: no DNS) sharing a
// key, and sends one message per setup from sender@example.org through
// Postfix. Mail from 127.0.0.1 is internal for the signer (signed) and
// external for the verifier (verified).
func TestOpenDKIMSignThenVerify(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "opendkim", "opendkim-genkey")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	signer := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key})
	verifier := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "v", Key: key})
	backends := []backend{{"signer", signer, ""}, {"verifier", verifier, ""}}

	// send delivers one message through a fresh Postfix with smtpd_milters
	// = milters and checks that it is signed by the signer.
	send := func(t *testing.T, milters string, pm *realpeer.Process) realpeer.Delivered {
		t.Helper()
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: milters})
		if out, err := pf.Send(t, "--header", "Subject: dkim test",
			"--body", "signed body\nsecond line   with  spaces\n"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("delivered:\n%s", describe(ds))
				if pm != nil {
					t.Logf("pmult log:\n%s", pm.Output())
				}
			}
		})
		if len(ds) != 1 {
			t.Fatalf("want 1 delivery, got %d", len(ds))
		}
		d := ds[0]
		sigs := d.HeaderValues("DKIM-Signature")
		if len(sigs) != 1 || !strings.Contains(sigs[0], "d=example.org") || !strings.Contains(sigs[0], "s=test") {
			t.Errorf("want one DKIM-Signature by d=example.org s=test, got %q", sigs)
		}
		return d
	}
	// results returns the verifier's Authentication-Results values.
	results := func(d realpeer.Delivered) []string {
		var out []string
		for _, v := range d.HeaderValues("Authentication-Results") {
			if strings.HasPrefix(v, "verifier.test;") {
				out = append(out, v)
			}
		}
		return out
	}
	wantPass := func(t *testing.T, d realpeer.Delivered) {
		t.Helper()
		ar := results(d)
		if len(ar) != 1 || !strings.Contains(ar[0], "dkim=pass") || !strings.Contains(ar[0], "header.d=example.org") {
			t.Errorf("want one Authentication-Results from verifier.test with dkim=pass header.d=example.org, got %q", ar)
		} else if b := sigB(d.Header("DKIM-Signature")); b == "" || !strings.Contains(ar[0], "header.b="+b) {
			t.Errorf("the verifier's result %q is not about the delivered signature (b=%s...)", ar[0], b)
		}
	}
	headerNames := func(d realpeer.Delivered) []string {
		var out []string
		for _, h := range visibleHeaders(d) {
			name, _, _ := strings.Cut(h, ":")
			out = append(out, name)
		}
		return out
	}

	var chain, mux realpeer.Delivered
	// The MTA's own chain: the verifier sees the signer's header (as
	// documented for Postfix 3.7 in the real-peers notes).
	t.Run("postfix-chain", func(t *testing.T) {
		chain = send(t, realpeer.PostfixMilter(signer)+" "+realpeer.PostfixMilter(verifier), nil)
		wantPass(t, chain)
	})
	// pmult, content = "serial" (the default): the verifier gets the
	// message replayed at end of message with the signature added, so a
	// later backend sees an earlier one's edit.
	t.Run("pmult-serial", func(t *testing.T) {
		spec, pm := startPmult(t, "", backends...)
		mux = send(t, realpeer.PostfixMilter(spec), pm)
		wantPass(t, mux)
	})
	if chain.Raw != nil && mux.Raw != nil {
		if got, want := headerNames(mux), headerNames(chain); !reflect.DeepEqual(got, want) {
			t.Errorf("header order: pmult %q, chain %q", got, want)
		}
	}
	// pmult, content = "parallel": by design every backend sees the
	// original message, so the verifier finds no signature (dkim=none,
	// AlwaysAddARHeader) although the delivered message carries one.
	// This is the documented, weaker semantics of parallel content mode,
	// not a bug: a verifier must not depend on a signer in that mode.
	t.Run("pmult-parallel", func(t *testing.T) {
		spec, pm := startPmult(t, `content = "parallel"`, backends...)
		d := send(t, realpeer.PostfixMilter(spec), pm)
		ar := results(d)
		if len(ar) != 1 || !strings.Contains(ar[0], "dkim=none") || strings.Contains(ar[0], "dkim=pass") {
			t.Errorf("parallel content: want one Authentication-Results with dkim=none (the verifier saw the unsigned original), got %q", ar)
		}
	})
}

// sigB returns the first 8 characters of an unfolded DKIM-Signature's b=
// tag, which opendkim quotes as header.b= in Authentication-Results.
func sigB(sig string) string {
	_, b, ok := strings.Cut(sig, " b=")
	if !ok || len(b) < 8 {
		return ""
	}
	return b[:8]
}
