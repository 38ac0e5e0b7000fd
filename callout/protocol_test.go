// protocol_test.go: the line parser (table and fuzz) and formatting
// round trips.

package callout

import (
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

func TestParseVrfy(t *testing.T) {
	cases := []struct {
		line string
		req  smtpprobe.Request
		err  string
	}{
		{"VRFY a@b", smtpprobe.Request{Email: "a@b"}, ""},
		{"vrfy a@b mode=hostonly host=1.2.3.4", smtpprobe.Request{Email: "a@b", Mode: smtpprobe.HostOnly, Host: "1.2.3.4"}, ""},
		{"VRFY a@b mode hostonly host 1.2.3.4", smtpprobe.Request{Email: "a@b", Mode: smtpprobe.HostOnly, Host: "1.2.3.4"}, ""},
		{"VRFY a@b MODE=mxonly HOST=x ehlo=e mailfrom=m@x starttls=always",
			smtpprobe.Request{Email: "a@b", Mode: smtpprobe.MXOnly, Host: "x", Ehlo: "e", MailFrom: "m@x", StartTLS: smtpprobe.StartTLSAlways}, ""},
		{"VRFY a@b\tmode=default", smtpprobe.Request{Email: "a@b"}, ""},
		{"VRFY", smtpprobe.Request{}, ErrInvalidArgs},
		{"VRFY a@b mode=HOSTONLY host=x", smtpprobe.Request{}, ErrModeValue},
		{"VRFY a@b mode=hostonly", smtpprobe.Request{}, ErrModeNeedsHost},
		{"VRFY a@b port=25", smtpprobe.Request{}, ErrUnknownAttr},
		{"VRFY a@b =", smtpprobe.Request{}, ErrUnknownAttr},
		{"VRFY a@b host", smtpprobe.Request{}, ErrSyntax},
		{"VRFY a@b c", smtpprobe.Request{}, ErrSyntax},
		{"VRFY a@b mode host=x", smtpprobe.Request{}, ErrSyntax},
		{"VRFY a@b starttls=maybe", smtpprobe.Request{}, ErrTLSValue},
	}
	for _, c := range cases {
		cmd, err := ParseLine(c.line)
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		req, err := ParseVrfy(cmd.Args)
		if c.err != "" {
			if pe, ok := err.(*ProtoError); !ok || pe.Text != c.err {
				t.Errorf("%q: error %v, want NO %s", c.line, err, c.err)
			}
			continue
		}
		if err != nil || req != c.req {
			t.Errorf("%q: %+v %v, want %+v", c.line, req, err, c.req)
		}
	}
	for line, want := range map[string]string{"": ErrEmpty, " \t ": ErrEmpty, "FOO": ErrUnknownCommand, "VRFYX a": ErrUnknownCommand} {
		if _, err := ParseLine(line); err == nil || err.(*ProtoError).Text != want {
			t.Errorf("%q: %v, want %s", line, err, want)
		}
	}
}

func TestTimeoutsAndRun(t *testing.T) {
	to, err := ParseTimeouts(strings.Fields("1 2 3 0 -5 6 7"))
	if err != nil || to.Connect != time.Second || to.Mail != 0 || to.Rcpt != 0 || to.Quit != 7*time.Second {
		t.Errorf("%+v %v", to, err)
	}
	if _, err := ParseTimeouts(strings.Fields("1 2 x 4 5 6 7")); err == nil || err.(*ProtoError).Text != "syntax error in #3" {
		t.Errorf("bad value: %v", err)
	}
	line := FormatTimeouts(smtpprobe.Timeouts{Connect: 1500 * time.Millisecond, Rcpt: time.Minute})
	if line != "TIMEOUT 2 1 1 1 60 1 1" {
		t.Errorf("FormatTimeouts: %q", line)
	}
	res, err := ParseRunReply("0000000000=success 0000000001=not_found 2=timeout")
	if err != nil || len(res) != 3 || res[1].Result != NotFound || res[2].ID != "2" {
		t.Errorf("%+v %v", res, err)
	}
	if _, err := ParseRunReply("1=maybe"); err == nil {
		t.Error("bad result accepted")
	}
	if _, err := FormatVrfy(smtpprobe.Request{Email: "a b@c"}); err == nil {
		t.Error("space in address accepted")
	}
}

// FuzzParseLine: no input panics the parser, and every VRFY it accepts
// survives FormatVrfy and a second parse unchanged.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"VRFY a@b mode=hostonly host=1.2.3.4", "vrfy a@b mode hostonly host x", "GET ehlo mailfrom",
		"TIMEOUT 1 2 3 4 5 6 7", "DROP 0000000001", "RUN", "QUIT", "SID x", "", "VRFY a@b starttls=ondemand ehlo=x mailfrom=<>",
		"VRFY =", "VRFY a@b mode", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := ParseLine(line)
		if err != nil {
			if _, ok := err.(*ProtoError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		switch cmd.Verb {
		case "TIMEOUT":
			ParseTimeouts(cmd.Args)
		case "DROP":
			if len(cmd.Args) == 1 {
				ParseID(cmd.Args[0])
			}
		case "VRFY":
			req, err := ParseVrfy(cmd.Args)
			if err != nil {
				return
			}
			out, err := FormatVrfy(req)
			if err != nil {
				return // e.g. a value FormatVrfy cannot carry
			}
			cmd2, err := ParseLine(out)
			if err != nil {
				t.Fatalf("%q -> %q: %v", line, out, err)
			}
			req2, err := ParseVrfy(cmd2.Args)
			if err != nil || req2 != req {
				t.Fatalf("%q -> %q: %+v %v, want %+v", line, out, req2, err, req)
			}
		}
	})
}
