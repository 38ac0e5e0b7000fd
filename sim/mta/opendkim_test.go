// opendkim_test.go: our mtasim against real OpenDKIM (no DNS): a stored
// message sent as --mail-file does to the signer comes back with a
// DKIM-Signature in the header diff, and the signed result, sent on to the
// verifier, passes.

package mtasim_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/sim/mta"
)

const dkimMessage = "From: Sender <sender@example.org>\n" +
	"To: rcpt@example.com\n" +
	"Subject: signed by opendkim\n" +
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\n" +
	"Message-ID: <dkim-test@example.org>\n" +
	"\n" +
	"body line one\n" +
	"body  line   two\n"

// mailFile runs what "mtasim --mail-file FILE -X SPEC" runs (with --full)
// and returns the report and the one message's result.
func mailFile(t *testing.T, spec string, content []byte) (string, *mtasim.Result) {
	t.Helper()
	p, err := mtasim.ParsePort(spec)
	if err != nil {
		t.Fatal(err)
	}
	var res *mtasim.Result
	cfg := &mtasim.Config{Backend: p.Backend(6), FilterName: spec, OnMessage: func(r *mtasim.Result) { res = r }}
	var out bytes.Buffer
	st, err := mtasim.RunMailFile(context.Background(), cfg, &mtasim.MailFile{Content: content}, &out, mtasim.BatchOptions{Full: true})
	if err != nil || st.Messages != 1 || st.Delivered != 1 || res == nil {
		t.Fatalf("mail file through %s: %v %+v\n%s", spec, err, st, out.String())
	}
	return out.String(), res
}

func TestOpenDKIMMailFile(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "opendkim", "opendkim-genkey")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	signer := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key})
	verifier := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "v", Key: key})

	// opendkim answers ACCEPT at end of message (after its edits).
	out, res := mailFile(t, signer, []byte(dkimMessage))
	if !strings.Contains(out, "=== message 1: accept (at eom)") || !strings.Contains(out, "headers:\n  + DKIM-Signature:") {
		t.Errorf("signer: report lacks the verdict or the added DKIM-Signature:\n%s", out)
	}
	var sig string
	for _, h := range res.Final.Headers {
		if strings.EqualFold(h.Name, "DKIM-Signature") {
			sig = strings.Join(strings.Fields(h.Value), " ")
		}
	}
	for _, want := range []string{"d=example.org", "s=test", "c=relaxed/relaxed", "b="} {
		if !strings.Contains(sig, want) {
			t.Errorf("signer: DKIM-Signature %q lacks %q\n%s", sig, want, out)
		}
	}
	if len(res.Final.Headers) != len(res.Original.Headers)+1 {
		t.Errorf("signer: want exactly one header added, got %d -> %d\n%s", len(res.Original.Headers), len(res.Final.Headers), out)
	}

	// The message as mtasim rendered it after the signer's edit verifies.
	out2, _ := mailFile(t, verifier, res.Final.Content())
	_, b, _ := strings.Cut(sig, " b=")
	if !strings.Contains(out2, "+ Authentication-Results: verifier.test;") || !strings.Contains(out2, "dkim=pass") ||
		len(b) < 8 || !strings.Contains(out2, "header.b="+b[:8]) {
		t.Errorf("verifier: want an added Authentication-Results with dkim=pass for this signature:\n%s", out2)
	}
	// And the unsigned original does not.
	out3, _ := mailFile(t, verifier, []byte(dkimMessage))
	if !strings.Contains(out3, "dkim=none") || strings.Contains(out3, "dkim=pass") {
		t.Errorf("verifier on the unsigned original: want dkim=none:\n%s", out3)
	}
}
