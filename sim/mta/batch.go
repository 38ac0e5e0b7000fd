// batch.go: batched SMTP replay (--bsmtp, Exim -bS semantics: HELO and
// EHLO act as RSET; VRFY, EXPN, ETRN, ATRN and HELP act as NOOP; QUIT ends
// the input) and single stored messages (--mail-file). Each resulting
// message is printed with the milter's edits applied, a header diff and
// the verdict; replies that refuse a command are printed as they come.

package mtasim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// BatchOptions configure RunBatch and RunMailFile.
type BatchOptions struct {
	// Full prints the resulting message after the report.
	Full  bool
	Trace io.Writer
}

// BatchStats counts the messages of a batch.
type BatchStats struct {
	Messages, Delivered, Refused int
}

// RunBatch replays batched SMTP from in. Syntax errors in administrative
// commands, a milter failure and an expectation that does not hold end
// the run with an error.
func RunBatch(ctx context.Context, cfg *Config, in LineReader, out io.Writer, opt BatchOptions) (BatchStats, error) {
	var st BatchStats
	c := *cfg
	c.Batch = true
	c.RequireHelo = false
	prev := cfg.OnMessage
	c.OnMessage = func(r *Result) {
		count(&st, r)
		r.Print(out, opt.Full)
		if prev != nil {
			prev(r)
		}
	}
	s, err := NewSession(ctx, &c)
	if err != nil {
		return st, err
	}
	defer s.Close(context.WithoutCancel(ctx))
	for n := 1; !s.Done(); n++ {
		line, err := in.ReadLine()
		if err == io.EOF {
			if s.InData() {
				return st, fmt.Errorf("line %d: %w: input ended inside DATA (no \".\" line)", n, ErrSyntax)
			}
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read batch: %w", err)
		}
		if opt.Trace != nil {
			fmt.Fprintf(opt.Trace, "%s\n", line)
		}
		inData := s.InData()
		replies, ierr := s.Input(ctx, line)
		for _, r := range replies {
			if opt.Trace != nil {
				io.WriteString(opt.Trace, r.Text())
			}
			if r.Code >= 400 && !(inData && line == ".") {
				fmt.Fprintf(out, "line %d: %s: %s", n, line, r.Text())
			}
		}
		if ierr != nil {
			var fe *FilterError
			if !errors.As(ierr, &fe) {
				ierr = fmt.Errorf("line %d: %w", n, ierr)
			}
			return st, ierr
		}
	}
	return st, nil
}

func count(st *BatchStats, r *Result) {
	st.Messages++
	if r.Delivered() {
		st.Delivered++
	} else {
		st.Refused++
	}
}

// MailFile describes a stored message to send (--mail-file).
type MailFile struct {
	Content []byte
	From    string   // envelope sender; default: the From: header's address
	Rcpts   []string // envelope recipients; default: To:, Cc: addresses
	Helo    string   // default "client.example.org"
}

// Envelope fills From and Rcpts from the headers when they are empty, and
// strips an mbox "From " line.
func (m *MailFile) Envelope() error {
	if bytes.HasPrefix(m.Content, []byte("From ")) {
		if i := bytes.IndexByte(m.Content, '\n'); i >= 0 {
			m.Content = m.Content[i+1:]
		}
	}
	hs, _ := ParseContent(m.Content)
	if m.From == "" {
		for _, h := range hs {
			if strings.EqualFold(h.Name, "Return-Path") || strings.EqualFold(h.Name, "From") {
				if a := addresses(h.Value); len(a) > 0 {
					m.From = a[0]
					break
				}
			}
		}
	}
	if len(m.Rcpts) == 0 {
		for _, h := range hs {
			if strings.EqualFold(h.Name, "To") || strings.EqualFold(h.Name, "Cc") {
				m.Rcpts = append(m.Rcpts, addresses(h.Value)...)
			}
		}
	}
	if m.From == "" {
		m.From = "<>"
	}
	if len(m.Rcpts) == 0 {
		return errors.New("mail file: no recipient (give --rcpt or a To: header)")
	}
	return nil
}

// addresses extracts the addresses of an address-list header value
// ("A <a@b>, c@d" gives "<a@b>", "<c@d>").
func addresses(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		p := strings.TrimSpace(part)
		if i := strings.IndexByte(p, '<'); i >= 0 {
			if j := strings.IndexByte(p[i:], '>'); j > 0 {
				out = append(out, p[i:i+j+1])
				continue
			}
		}
		if f := strings.Fields(p); len(f) == 1 && strings.Contains(f[0], "@") {
			out = append(out, "<"+f[0]+">")
		}
	}
	return out
}

func angle(a string) string {
	a = strings.TrimSpace(a)
	if strings.HasPrefix(a, "<") {
		return a
	}
	return "<" + a + ">"
}

// Script returns the SMTP command lines of a session sending the message
// (without the data, which goes through Session.SendMessage).
func (m *MailFile) commands() []string {
	helo := m.Helo
	if helo == "" {
		helo = "client.example.org"
	}
	cmds := []string{"EHLO " + helo, "MAIL FROM:" + angle(m.From)}
	for _, r := range m.Rcpts {
		cmds = append(cmds, "RCPT TO:"+angle(r))
	}
	return append(cmds, "DATA")
}

// SendMail runs one session sending m through s (EHLO, MAIL, RCPT…,
// DATA, the content) and returns the end-of-data reply, or the refusal of
// an envelope command. It does not QUIT.
func SendMail(ctx context.Context, s *Session, m *MailFile) (Reply, error) {
	var last Reply
	for _, c := range m.commands() {
		rs, err := s.Input(ctx, c)
		if err != nil {
			return Reply{}, err
		}
		last = rs[0]
		if last.Code >= 400 && !strings.HasPrefix(c, "RCPT") {
			s.Input(ctx, "RSET")
			return last, nil
		}
	}
	if !s.InData() {
		s.Input(ctx, "RSET")
		return last, nil
	}
	return s.SendMessage(ctx, m.Content)
}

// RunMailFile sends one stored message through the filter and prints the
// result.
func RunMailFile(ctx context.Context, cfg *Config, m *MailFile, out io.Writer, opt BatchOptions) (BatchStats, error) {
	var st BatchStats
	if err := m.Envelope(); err != nil {
		return st, err
	}
	c := *cfg
	printed := false
	prev := cfg.OnMessage
	c.OnMessage = func(r *Result) {
		count(&st, r)
		r.Print(out, opt.Full)
		printed = true
		if prev != nil {
			prev(r)
		}
	}
	s, err := NewSession(ctx, &c)
	if err != nil {
		return st, err
	}
	defer s.Close(context.WithoutCancel(ctx))
	r, err := SendMail(ctx, s, m)
	if err != nil {
		return st, err
	}
	if !printed {
		st.Messages++
		st.Refused++
		fmt.Fprintf(out, "=== message 1: refused before DATA\nreply: %s", r.Text())
	}
	s.Input(ctx, "QUIT")
	return st, nil
}
