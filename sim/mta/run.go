// run.go: the stdio runner (a script or a terminal on stdin, replies on
// stdout, an optional trace file) and the exit codes, which are those of
// mailfromd's mtasim for what it defines (0, 1, 69) and sysexits(3) for
// the rest.

package mtasim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes.
const (
	ExitOK          = 0  // every expectation held
	ExitExpect      = 1  // an \E expectation failed
	ExitUsage       = 64 // bad command line
	ExitDataErr     = 65 // malformed script or input file
	ExitNoInput     = 66 // an input file cannot be read
	ExitUnavailable = 69 // the milter cannot be reached or broke
	ExitSoftware    = 70 // anything else
)

// ExitCode maps an error of the runners to an exit code.
func ExitCode(err error) int {
	var ee *ExpectError
	var fe *FilterError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ExitExpect
	case errors.As(err, &fe):
		return ExitUnavailable
	case errors.Is(err, ErrSyntax):
		return ExitDataErr
	}
	return ExitSoftware
}

// LineReader yields input lines without their line ends; io.EOF at the end.
type LineReader interface {
	ReadLine() (string, error)
}

// NewLineReader reads lines from r (LF or CRLF).
func NewLineReader(r io.Reader) LineReader { return &lineReader{br: bufio.NewReaderSize(r, 64<<10)} }

type lineReader struct{ br *bufio.Reader }

func (l *lineReader) ReadLine() (string, error) {
	s, err := l.br.ReadString('\n')
	if err != nil && (err != io.EOF || s == "") {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r"), nil
}

// ScriptOptions configure RunScript.
type ScriptOptions struct {
	// Trace receives every input line and every reply (--trace-file).
	Trace io.Writer
	// Interactive: a syntax error is answered 502 and the session goes on
	// (a terminal); otherwise it ends the run with ExitDataErr.
	Interactive bool
	// CRLF ends reply lines with "\r\n" (daemon); otherwise "\n".
	CRLF bool
	// ShowEdits prints what the milter did to each message after its
	// end-of-data reply, one "edit:" line per edit (Result.EditLines).
	// Off by default: mailfromd's mtasim prints nothing of the kind, and
	// transcripts are compared with its own byte for byte.
	ShowEdits bool
}

// RunScript runs one session reading lines from in and writing replies to
// out. It returns nil when the input ended (or QUIT came) with every
// expectation met, else the first *ExpectError, *FilterError or syntax
// error.
func RunScript(ctx context.Context, cfg *Config, in LineReader, out io.Writer, opt ScriptOptions) error {
	var done []*Result // messages ended by the last line, for ShowEdits
	if opt.ShowEdits {
		c := *cfg
		prev := cfg.OnMessage
		c.OnMessage = func(r *Result) {
			done = append(done, r)
			if prev != nil {
				prev(r)
			}
		}
		cfg = &c
	}
	s, err := NewSession(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close(context.WithoutCancel(ctx))
	w := &replyWriter{out: out, trace: opt.Trace, crlf: opt.CRLF}
	if err := w.write(s.Greeting()); err != nil {
		return err
	}
	for n := 1; !s.Done(); n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, err := in.ReadLine()
		if err == io.EOF {
			if s.InData() {
				return fmt.Errorf("%w: input ended inside DATA (no \".\" line)", ErrSyntax)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read script: %w", err)
		}
		if opt.Trace != nil {
			fmt.Fprintf(opt.Trace, "%s\n", line)
		}
		replies, ierr := s.Input(ctx, line)
		for _, r := range replies {
			if err := w.write(r); err != nil {
				return err
			}
		}
		for _, r := range done {
			for _, l := range r.EditLines() {
				if err := w.line(l); err != nil {
					return err
				}
			}
		}
		done = done[:0]
		if ierr != nil {
			if errors.Is(ierr, ErrSyntax) && opt.Interactive {
				continue
			}
			return fmt.Errorf("line %d: %w", n, ierr)
		}
	}
	return nil
}

// line writes one line that is not a reply (an edit line).
func (w *replyWriter) line(l string) error {
	end := "\n"
	if w.crlf {
		end = "\r\n"
	}
	if w.trace != nil {
		io.WriteString(w.trace, l+"\n")
	}
	if _, err := io.WriteString(w.out, l+end); err != nil {
		return fmt.Errorf("write edit: %w", err)
	}
	return nil
}

type replyWriter struct {
	out, trace io.Writer
	crlf       bool
}

func (w *replyWriter) write(r Reply) error {
	t := r.Text()
	if w.trace != nil {
		io.WriteString(w.trace, t)
	}
	if w.crlf {
		t = r.String() + "\r\n"
	}
	if _, err := io.WriteString(w.out, t); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}
