// script.go: runs an SMTP script (one SMTP session, client side) against
// the pmilter as smtps would, printing what smtps would answer. Lines:
// EHLO/HELO arg, MAIL FROM:<addr> [params], RCPT TO:<addr> [params],
// DATA followed by the message and a line ".", RSET, QUIT; empty lines and
// lines starting with '#' are skipped. The session connects first (the
// client address and host name come from ScriptOptions). This is the
// minimal runner of the library; the full SMTP-script front (expectations,
// macros, batched SMTP, load) is mtasim's, with Backend (`mtasim
// --pmilter`, cmd/pmilter-sim).

package meta1sim

import (
	"bufio"
	"context"
	"fmt"
	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"io"
	"net/netip"
	"strings"
)

// ScriptOptions describe the SMTP client of a script.
type ScriptOptions struct {
	ClientAddr netip.Addr
	ClientPort int
	Hostname   string
	Macros     map[string]string // MeTA1 macro values by name
}

// RunScript runs one SMTP session from r and writes smtps's replies to w,
// one line per command ("EHLO x -> 250 ok"). It returns an error for a
// broken script or connection; SMTP rejections are output, not errors.
func RunScript(ctx context.Context, c *Client, r io.Reader, w io.Writer, o ScriptOptions) error {
	s, err := c.NewSession(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	for k, v := range o.Macros {
		s.Macros[k] = v
	}
	out := func(cmd string, rep Reply, ok string) {
		fmt.Fprintf(w, "%s -> %s\n", cmd, strings.ReplaceAll(rep.SMTP(ok), "\r\n", "\n    "))
	}
	rep, err := s.Connect(ctx, o.ClientAddr, o.ClientPort, o.Hostname)
	if err != nil {
		return err
	}
	out("CONNECT", rep, "220 mx ESMTP")
	if rep.Objects() {
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	inMail, rcpts := false, 0
	var tr Transaction
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		var rep Reply
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			rep, err = s.Ehlo(ctx, arg)
			out(line, rep, "250 mx")
		case "MAIL":
			f := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(arg, "FROM:"), "from:"))
			if len(f) == 0 {
				return fmt.Errorf("script: %q: no address", line)
			}
			rep, err = s.Mail(ctx, f[0], f[1:]...)
			out(line, rep, "250 2.1.0 sender ok")
			inMail, rcpts, tr = !rep.Objects(), 0, Transaction{}
		case "RCPT":
			f := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(arg, "TO:"), "to:"))
			if len(f) == 0 {
				return fmt.Errorf("script: %q: no address", line)
			}
			rep, err = s.Rcpt(ctx, rcpts, f[0], f[1:]...)
			out(line, rep, "250 2.1.5 recipient ok")
			if !rep.Objects() {
				tr.Rcpts = append(tr.Rcpts, f[0])
			}
			rcpts++
		case "DATA":
			var msg strings.Builder
			for sc.Scan() {
				l := strings.TrimRight(sc.Text(), "\r")
				if l == "." {
					break
				}
				msg.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
			}
			if !inMail || len(tr.Rcpts) == 0 {
				fmt.Fprintf(w, "DATA -> 503 5.5.1 no valid recipients\n")
				continue
			}
			rep, err = s.Data(ctx)
			out("DATA", rep, "354 go ahead")
			if err != nil || rep.Objects() {
				break
			}
			tr.Message = []byte(msg.String())
			rep, err = s.Message(ctx, tr.Message, 0)
			ok := "250 2.0.0 message accepted"
			if rep.Code == pmilter.ReplyDiscard { // discard: accepted and dropped
				ok = "250 2.0.0 message accepted (discarded by the policy milter)"
			}
			out(".", rep, ok)
			if err == nil && !rep.Objects() {
				if aerr := tr.Apply(rep); aerr != nil {
					fmt.Fprintf(w, "    (modifications: %v)\n", aerr)
				}
				fmt.Fprintf(w, "    recipients: %s\n", strings.Join(tr.Rcpts, " "))
				for _, l := range strings.Split(strings.TrimSuffix(string(tr.Message), "\r\n"), "\r\n") {
					fmt.Fprintf(w, "    | %s\n", l)
				}
			}
			inMail = false
		case "RSET":
			err = s.Abort()
			inMail = false
			fmt.Fprintln(w, "RSET -> 250 2.0.0 ok")
		case "QUIT":
			fmt.Fprintln(w, "QUIT -> 221 2.0.0 bye")
			return s.Close()
		default:
			fmt.Fprintf(w, "%s -> 500 5.5.2 unknown command\n", line)
		}
		if err != nil {
			return err
		}
		if rep.Code == pmilter.ReplySSD {
			return nil // 421: the session is over
		}
	}
	return sc.Err()
}
