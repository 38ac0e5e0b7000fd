// client.go: a client of the calloutd protocol, for our own server and
// for mailfromd's calloutd: VRFY, GET, SID, TIMEOUT, RUN (with progress
// lines), DROP, QUIT, Check (one address with what its progress lines
// say), and Do for any raw line. One Client is one session;
// it is not safe for concurrent use. Deadlines come from the context of
// each call. Limits: reply lines up to 64 KiB.

package callout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// maxReplyLine bounds one reply line read by the client.
const maxReplyLine = 64 << 10

// Client is one calloutd session.
type Client struct {
	// Greeting is the server's first line.
	Greeting string
	c        net.Conn
	r        *bufio.Reader
}

// Dial connects to a calloutd server (network "tcp" or "unix") and reads
// its greeting.
func Dial(ctx context.Context, network, addr string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("callout: dial %s %s: %w", network, addr, err)
	}
	cl, err := NewClient(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

// NewClient starts a session on an open connection: it reads the greeting,
// which must start with "OK".
func NewClient(ctx context.Context, c net.Conn) (*Client, error) {
	cl := &Client{c: c, r: bufio.NewReaderSize(c, 4096)}
	stop := cl.deadline(ctx)
	defer stop()
	g, err := cl.readLine()
	if err != nil {
		return nil, fmt.Errorf("callout: greeting: %w", err)
	}
	if !strings.HasPrefix(g, "OK") {
		return nil, fmt.Errorf("callout: unexpected greeting %q", g)
	}
	cl.Greeting = g
	return cl, nil
}

// Close closes the connection without QUIT.
func (cl *Client) Close() error { return cl.c.Close() }

// deadline applies ctx's deadline and cancellation to the connection.
func (cl *Client) deadline(ctx context.Context) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		cl.c.SetDeadline(d)
	} else {
		cl.c.SetDeadline(time.Time{})
	}
	s := context.AfterFunc(ctx, func() { cl.c.SetDeadline(time.Unix(1, 0)) })
	return func() { s() }
}

func (cl *Client) readLine() (string, error) {
	var b []byte
	for {
		frag, isPrefix, err := cl.r.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b = append(b, frag...)
		if len(b) > maxReplyLine {
			return "", errors.New("callout: reply line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// Reply is the server's answer to one command.
type Reply struct {
	Lines []string // unsolicited lines, without "* "
	OK    bool     // the final line started with OK
	Text  string   // the final line after "OK " or "NO "
}

// ReplyError is a NO reply.
type ReplyError struct {
	Command string
	Text    string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("callout: %s: NO %s", e.Command, e.Text) }

// Do sends one raw command line and reads the reply up to its OK or NO
// line; unsolicited lines are passed to each (if not nil) as they arrive.
// A NO reply is not an error of Do (Reply.OK is false).
func (cl *Client) Do(ctx context.Context, line string, each func(string)) (Reply, error) {
	stop := cl.deadline(ctx)
	defer stop()
	if strings.ContainsAny(line, "\r\n") {
		return Reply{}, fmt.Errorf("callout: command %q contains a line break", line)
	}
	if _, err := io.WriteString(cl.c, line+"\r\n"); err != nil {
		return Reply{}, fmt.Errorf("callout: send: %w", err)
	}
	var rp Reply
	for {
		l, err := cl.readLine()
		if err != nil {
			return rp, fmt.Errorf("callout: reply to %q: %w", verbOf(line), err)
		}
		switch {
		case strings.HasPrefix(l, "* "):
			rp.Lines = append(rp.Lines, l[2:])
			if each != nil {
				each(l[2:])
			}
		case l == "OK" || strings.HasPrefix(l, "OK "):
			rp.OK, rp.Text = true, strings.TrimPrefix(strings.TrimPrefix(l, "OK"), " ")
			return rp, nil
		case l == "NO" || strings.HasPrefix(l, "NO "):
			rp.Text = strings.TrimPrefix(strings.TrimPrefix(l, "NO"), " ")
			return rp, nil
		default:
			return rp, fmt.Errorf("callout: unexpected reply line %q", l)
		}
	}
}

func verbOf(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return strings.ToUpper(v)
}

// cmd runs a command that must succeed.
func (cl *Client) cmd(ctx context.Context, line string, each func(string)) (Reply, error) {
	rp, err := cl.Do(ctx, line, each)
	if err != nil {
		return rp, err
	}
	if !rp.OK {
		return rp, &ReplyError{Command: verbOf(line), Text: rp.Text}
	}
	return rp, nil
}

// Vrfy queues an address and returns its id.
func (cl *Client) Vrfy(ctx context.Context, req smtpprobe.Request) (string, error) {
	line, err := FormatVrfy(req)
	if err != nil {
		return "", err
	}
	rp, err := cl.cmd(ctx, line, nil)
	if err != nil {
		return "", err
	}
	if rp.Text == "" {
		return "", errors.New("callout: VRFY: no id in the reply")
	}
	return rp.Text, nil
}

// Get asks for server parameters ("ehlo", "mailfrom") and returns the
// values the server reported.
func (cl *Client) Get(ctx context.Context, names ...string) (map[string]string, error) {
	rp, err := cl.cmd(ctx, "GET "+strings.Join(names, " "), nil)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range rp.Lines {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// SID sets the session id.
func (cl *Client) SID(ctx context.Context, sid string) error {
	_, err := cl.cmd(ctx, "SID "+sid, nil)
	return err
}

// SetTimeouts sends TIMEOUT (whole seconds).
func (cl *Client) SetTimeouts(ctx context.Context, t smtpprobe.Timeouts) error {
	_, err := cl.cmd(ctx, FormatTimeouts(t), nil)
	return err
}

// Progress is one progress line of RUN.
type Progress struct {
	ID    string
	Stage string
	Text  string
}

// Run verifies the queued addresses; progress (if not nil) receives the
// progress lines as they arrive.
func (cl *Client) Run(ctx context.Context, progress func(Progress)) ([]IDResult, error) {
	each := func(l string) {
		if progress == nil {
			return
		}
		id, rest, _ := strings.Cut(l, " ")
		st, text, _ := strings.Cut(rest, " ")
		progress(Progress{ID: id, Stage: st, Text: text})
	}
	rp, err := cl.cmd(ctx, "RUN", each)
	if err != nil {
		return nil, err
	}
	return ParseRunReply(rp.Text)
}

// Drop removes an id from the queue.
func (cl *Client) Drop(ctx context.Context, id string) error {
	_, err := cl.cmd(ctx, "DROP "+id, nil)
	return err
}

// Quit ends the session and closes the connection.
func (cl *Client) Quit(ctx context.Context) error {
	_, err := cl.cmd(ctx, "QUIT", nil)
	cl.c.Close()
	return err
}

// Verify is a one-address convenience: VRFY, RUN, and the result.
func (cl *Client) Verify(ctx context.Context, req smtpprobe.Request) (Result, error) {
	a, err := cl.Check(ctx, req)
	return a.Result, err
}

// Answer is RUN's answer for one address with the progress lines of its
// id, which say more than the result word (see its methods).
type Answer struct {
	ID       string
	Result   Result
	Progress []Progress // the lines of this id, in order
}

// Cached reports whether the server said the answer came from its cache
// (our server's cached line; mailfromd's calloutd does not say).
func (a Answer) Cached() bool { return a.has(StageCached) }

// NoMailHost reports whether the server said the address's domain has
// no mail host (NXDOMAIN, no MX and no address, a null MX, MX hosts
// without addresses): our server's nohost line.
func (a Answer) NoMailHost() bool { return a.has(StageNoHost) }

// NoHostContacted reports a not_found or failure without any progress
// line: no host was contacted. From mailfromd's calloutd 8.15 this is
// either a domain without mail host (NXDOMAIN, no MX and no address:
// not_found; a null MX, MX hosts without addresses: failure) or an
// answer from its cache (it says nothing about that, and keeps not_found
// for a few seconds), so a client that wants to tell must look at the
// domain's DNS itself. Our server says which (cached, nohost), so this is
// false for its answers.
func (a Answer) NoHostContacted() bool {
	return len(a.Progress) == 0 && (a.Result == NotFound || a.Result == Failure)
}

// NoReply reports whether the answer is temp_failure because the last
// host contacted did not reply (its last line "RECV nothing": a
// timeout, or the connection broke), which is how both servers report
// a soft timeout. Both keep such an address queued and probe it again
// with their hard timeouts once the client has gone.
func (a Answer) NoReply() bool {
	n := len(a.Progress)
	return a.Result == TempFailure && n > 0 && a.Progress[n-1].Stage == smtpprobe.StageRecv &&
		a.Progress[n-1].Text == "nothing"
}

// Unreached reports whether the answer is temp_failure without any host
// contacted (connection refused, DNS failure; no progress line). Both
// servers keep such an address queued for background completion, as
// with NoReply.
func (a Answer) Unreached() bool { return a.Result == TempFailure && len(a.Progress) == 0 }

func (a Answer) has(stage string) bool {
	for _, p := range a.Progress {
		if p.Stage == stage {
			return true
		}
	}
	return false
}

// Check queues one address (VRFY), runs the queue (RUN) and returns its
// answer. Results and lines of other ids (entries left queued by earlier
// commands, or of other clients on mailfromd's --single-process calloutd)
// are ignored.
func (cl *Client) Check(ctx context.Context, req smtpprobe.Request) (Answer, error) {
	id, err := cl.Vrfy(ctx, req)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{ID: id}
	res, err := cl.Run(ctx, func(p Progress) {
		if p.ID == id {
			a.Progress = append(a.Progress, p)
		}
	})
	if err != nil {
		return a, err
	}
	for _, r := range res {
		if r.ID == id {
			a.Result = r.Result
			return a, nil
		}
	}
	return a, fmt.Errorf("callout: RUN did not answer id %s", id)
}
