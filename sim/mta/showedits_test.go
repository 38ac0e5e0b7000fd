package mtasim

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// TestScriptShowEdits: with ShowEdits, a script run prints the milter's
// edits after the end-of-data reply, as it prints replies; without it the
// transcript is unchanged (the one compared with mailfromd's mtasim).
func TestScriptShowEdits(t *testing.T) {
	srv := &testmilter.Server{Actions: mp.ActAllMask, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code != mp.CmdEOB {
			return nil
		}
		return []mp.Packet{
			testmilter.Reply(mp.RespChgFrom, testmilter.Str("<new@example.org>", "SIZE=10")),
			testmilter.Reply(mp.RespAddRcptPar, testmilter.Str("<c@example.com>", "NOTIFY=NEVER")),
			testmilter.Reply(mp.RespDelRcpt, testmilter.Str("<b@example.com>")),
			testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-Added", "yes")),
			testmilter.Reply(mp.RespChgHeader, append([]byte{0, 0, 0, 1}, testmilter.Str("Subject", "new subject")...)),
			testmilter.Reply(mp.RespChgHeader, append([]byte{0, 0, 0, 1}, testmilter.Str("Message-Id", "")...)),
			testmilter.Reply(mp.RespQuarantine, testmilter.Str("held for review")),
			testmilter.Reply(mp.RespReplBody, []byte("new body\r\n")),
			{Code: mp.RespContinue},
		}
	}}
	cfg := startTM(t, srv, "")
	run := func(show bool) string {
		var out bytes.Buffer
		err := RunScript(context.Background(), cfg, NewLineReader(strings.NewReader(basicScript)), &out, ScriptOptions{ShowEdits: show})
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		return out.String()
	}
	plain, shown := run(false), run(true)
	if strings.Contains(plain, "edit:") {
		t.Errorf("edit lines without ShowEdits:\n%s", plain)
	}
	want := "edit: change sender <new@example.org> SIZE=10\n" +
		"edit: add recipient <c@example.com> NOTIFY=NEVER\n" +
		"edit: delete recipient <b@example.com>\n" +
		"edit: add header X-Added: yes\n" +
		"edit: change header Subject[1]: new subject\n" +
		"edit: delete header Message-Id[1]\n" +
		"edit: quarantine: held for review\n" +
		"edit: replace body (10 bytes)\n"
	t.Logf("transcript:\n%s", shown)
	if got := strings.Replace(shown, want, "", 1); got != plain {
		t.Errorf("with ShowEdits, want the plain transcript plus\n%s\ngot:\n%s\nplain:\n%s", want, shown, plain)
	}
	// Right after the end-of-data reply, before QUIT's.
	if k := strings.Index(shown, want); k < 0 || !strings.HasPrefix(shown[k+len(want):], "221 ") {
		t.Errorf("edit lines not between the end-of-data reply and QUIT's:\n%s", shown)
	}
}
