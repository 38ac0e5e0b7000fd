// server.go: the calloutd protocol server. Each connection is a session
// with its own queue of addresses (VRFY), session id (SID) and soft
// timeouts (TIMEOUT); RUN verifies the queue, several addresses at a time,
// and reports each one's progress lines in queue order before the final
// "OK id=result ..." (our extra stages cached and nohost tell the
// client an answer came from the cache or found no mail host). As with
// calloutd, addresses whose probe ended on a
// network error stay queued for the next RUN, and when the client leaves,
// those and the ones never run are completed in the background with the
// hard timeouts (Verifier.Enqueue), unless NoBackground is set.
//
// Tunables (Server fields) and defaults: Greeting calloutd's; MaxLine 1023
// bytes; MaxQueue 100 addresses per session; RunParallel 8 probes at once
// per RUN; IdleTimeout 5 minutes between commands; ProbeTimeout none;
// MaxConns unlimited (calloutd's max-instances). Update changes the
// settings of a running server (a reload) for new sessions.

package callout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/connserve"
)

// Server defaults.
const (
	DefaultMaxQueue    = 100
	DefaultRunParallel = 8
	DefaultIdleTimeout = 5 * time.Minute
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("callout: server closed")

// Server serves the calloutd protocol. Set its fields before Serve.
type Server struct {
	// Verifier answers the addresses (required).
	Verifier *Verifier
	// Ehlo and MailFrom are what GET reports (default: the prober's;
	// MailFrom "<>" when it is the null sender).
	Ehlo, MailFrom string
	// Timeouts are a session's soft timeouts until TIMEOUT changes them
	// (zero fields: the prober's).
	Timeouts smtpprobe.Timeouts
	// Greeting is the first line sent (default Greeting).
	Greeting    string
	MaxLine     int
	MaxQueue    int
	RunParallel int
	IdleTimeout time.Duration
	// ProbeTimeout bounds one address's probe in RUN (0: only the
	// per-stage timeouts); past it the answer is "timeout".
	ProbeTimeout time.Duration
	// MaxConns bounds the sessions served at once; further connections
	// wait in the listen backlog (0: no limit).
	MaxConns int
	// NoBackground disables background completion.
	NoBackground bool
	// Logger receives session logs; nil: discarded (the caller's logger is
	// the only one used: no process-wide default).
	Logger *slog.Logger

	once sync.Once
	cs   connserve.Server
	upd  atomic.Pointer[Server] // the settings of the last Update
}

// cur returns the settings in force: the last Update's, or s's own.
func (s *Server) cur() *Server {
	if u := s.upd.Load(); u != nil {
		return u
	}
	return s
}

// Update changes the settings of a running Server (a configuration
// reload) for the sessions that start after it: Ehlo, MailFrom,
// Timeouts, Greeting, MaxLine, MaxQueue, RunParallel, IdleTimeout,
// ProbeTimeout, NoBackground and Logger are taken from n, which must not
// be changed afterwards; the Verifier (see Verifier.Update) and MaxConns
// stay. Open sessions finish with the settings they began with.
func (s *Server) Update(n *Server) {
	u := &Server{Verifier: s.Verifier, Ehlo: n.Ehlo, MailFrom: n.MailFrom, Timeouts: n.Timeouts, Greeting: n.Greeting,
		MaxLine: n.MaxLine, MaxQueue: n.MaxQueue, RunParallel: n.RunParallel, IdleTimeout: n.IdleTimeout,
		ProbeTimeout: n.ProbeTimeout, MaxConns: s.MaxConns, NoBackground: n.NoBackground, Logger: n.Logger}
	s.upd.Store(u)
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return discardLog
}

// discardLog is the logger of a Server or Verifier given none.
var discardLog = slog.New(slog.DiscardHandler)

func (s *Server) setup() {
	s.once.Do(func() {
		s.cs = connserve.Server{Name: "callout", Log: s.log(), MaxConns: s.MaxConns, WaitWhenFull: true,
			NewConn: func(c net.Conn) connserve.Conn { return serverConn{s: s, c: c} }}
	})
}

// serverConn runs one accepted connection for connserve.
type serverConn struct {
	s *Server
	c net.Conn
}

func (sc serverConn) Serve(ctx context.Context) { sc.s.ServeConn(ctx, sc.c) }

// Drain ends a session waiting for a command now, a busy one after its reply.
func (sc serverConn) Drain() { sc.c.SetReadDeadline(time.Unix(1, 0)) }

func (sc serverConn) Close() { sc.c.Close() }

// Serve accepts connections on l until Shutdown or an accept error.
func (s *Server) Serve(l net.Listener) error {
	s.setup()
	err := s.cs.Serve(l)
	if errors.Is(err, connserve.ErrClosed) {
		l.Close()
		return ErrServerClosed
	}
	return err
}

func (s *Server) isClosed() bool { return s.cs.Closing() }

// Shutdown stops accepting, lets sessions finish the command they are
// running, and waits for them until ctx is done; then it closes what is
// left. It does not close the Verifier.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setup()
	return s.cs.Shutdown(ctx)
}

// session is the state of one connection.
type session struct {
	s        *Server
	cf       *Server // the settings in force when the session began
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	sid      string
	timeouts smtpprobe.Timeouts
	// SET values (nil: not set): defaults of the session's VRFYs.
	ehlo, mailFrom *string
	startTLS       *smtpprobe.StartTLS
	queue          []*entry
	nextID         uint64
	log            *slog.Logger
}

type entry struct {
	id  uint64
	req smtpprobe.Request
}

// ServeConn runs one session on c until QUIT, EOF, an idle timeout or
// ctx is done, and closes c.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.setup()
	v := s.Verifier
	v.init()
	v.c.sessions.Add(1)
	v.c.sessionsOpen.Add(1)
	cf := s.cur() // this session's settings
	ses := &session{s: s, cf: cf, c: c, r: bufio.NewReaderSize(c, 1024), w: bufio.NewWriterSize(c, 4096),
		timeouts: cf.Timeouts, log: cf.log().With("client", c.RemoteAddr().String())}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		c.Close()
		v.c.sessionsOpen.Add(-1)
		ses.finish()
	}()
	g := cf.Greeting
	if g == "" {
		g = Greeting
	}
	if ses.reply(g) != nil {
		return
	}
	idle := cf.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	for {
		if s.isClosed() {
			return
		}
		c.SetReadDeadline(time.Now().Add(idle))
		line, tooLong, err := ses.readLine()
		if err != nil {
			if !errors.Is(err, io.EOF) && !s.isClosed() {
				ses.log.Debug("callout session ends", "err", err)
			}
			return
		}
		v.c.commands.Add(1)
		if tooLong {
			if ses.no(ErrBadInput) != nil {
				return
			}
			continue
		}
		quit, err := ses.command(ctx, line)
		if err != nil || quit {
			return
		}
	}
}

// readLine reads one line of at most MaxLine bytes (line end included);
// a longer one is read to its end and reported tooLong.
func (ses *session) readLine() (line string, tooLong bool, err error) {
	max := ses.cf.MaxLine
	if max <= 0 {
		max = MaxLineDefault
	}
	var buf []byte
	n := 0
	for {
		frag, err := ses.r.ReadSlice('\n')
		n += len(frag)
		if n > max {
			tooLong = true
		} else {
			buf = append(buf, frag...)
		}
		switch {
		case err == nil:
			return strings.TrimRight(string(buf), "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return "", false, err
		}
	}
}

func (ses *session) reply(line string) error {
	ses.w.WriteString(line)
	ses.w.WriteString("\r\n")
	return ses.w.Flush()
}

func (ses *session) no(text string) error {
	ses.s.Verifier.c.errorReplies.Add(1)
	return ses.reply("NO " + text)
}

// command runs one command line; quit is true after QUIT.
func (ses *session) command(ctx context.Context, line string) (quit bool, err error) {
	cmd, perr := ParseLine(line)
	if perr != nil {
		return false, ses.no(perr.(*ProtoError).Text)
	}
	fail := func(e error) error {
		var pe *ProtoError
		if errors.As(e, &pe) {
			return ses.no(pe.Text)
		}
		return ses.no(e.Error())
	}
	switch cmd.Verb {
	case "VRFY":
		req, err := ParseVrfy(cmd.Args)
		if err != nil {
			return false, fail(err)
		}
		max := ses.cf.MaxQueue
		if max <= 0 {
			max = DefaultMaxQueue
		}
		if len(ses.queue) >= max {
			return false, ses.no(ErrQueueFull)
		}
		e := &entry{id: ses.nextID, req: req}
		ses.nextID++
		ses.queue = append(ses.queue, e)
		return false, ses.reply("OK " + FormatID(e.id))
	case "GET":
		if len(cmd.Args) == 0 {
			return false, ses.no(ErrInvalidArgs)
		}
		for _, a := range cmd.Args {
			switch strings.ToLower(a) {
			case "ehlo":
				e := ses.cf.ehlo()
				if ses.ehlo != nil {
					e = *ses.ehlo
				}
				ses.w.WriteString("* ehlo=" + e + "\r\n")
			case "mailfrom":
				m := ses.cf.mailFrom()
				if ses.mailFrom != nil {
					m = *ses.mailFrom
				}
				ses.w.WriteString("* mailfrom=" + m + "\r\n")
			}
		}
		return false, ses.reply("OK")
	case "SET":
		_, rest, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
		name, value, err := ParseSet(rest)
		if err != nil {
			return false, fail(err)
		}
		switch name {
		case "EHLO":
			ses.ehlo = &value
		case "MAILFROM":
			ses.mailFrom = &value
		case "STARTTLS":
			st, err := smtpprobe.ParseStartTLS(value)
			if err != nil {
				return false, ses.no(ErrTLSValue)
			}
			ses.startTLS = &st
		case "TRANSCRIPT":
			// Accepted; the server's transcript setting decides.
		default:
			return false, ses.no(ErrBadAssignment + " " + name + "=" + value)
		}
		return false, ses.reply("OK")
	case "SID":
		if len(cmd.Args) != 1 {
			return false, ses.no(ErrInvalidArgs)
		}
		ses.sid = cmd.Args[0]
		ses.log = ses.log.With("sid", ses.sid)
		return false, ses.reply("OK")
	case "TIMEOUT":
		t, err := ParseTimeouts(cmd.Args)
		if err != nil {
			return false, fail(err)
		}
		ses.timeouts = t.Or(ses.cf.Timeouts)
		return false, ses.reply("OK timeouts set")
	case "DROP":
		if len(cmd.Args) != 1 {
			return false, ses.no(ErrInvalidArgs)
		}
		id, err := ParseID(cmd.Args[0])
		if err != nil {
			return false, fail(err)
		}
		for i, e := range ses.queue {
			if e.id == id {
				ses.queue = append(ses.queue[:i], ses.queue[i+1:]...)
				return false, ses.reply("OK")
			}
		}
		return false, ses.no(ErrNoEntry)
	case "RUN":
		if len(cmd.Args) != 0 {
			return false, ses.no(ErrInvalidArgs)
		}
		return false, ses.run(ctx)
	case "QUIT":
		if len(cmd.Args) != 0 {
			return false, ses.no(ErrInvalidArgs)
		}
		return true, ses.reply("OK bye")
	}
	return false, ses.no(ErrUnknownCommand)
}

func (s *Server) ehlo() string {
	if s.Ehlo != "" {
		return s.Ehlo
	}
	if p := s.Verifier.cur().Prober; p != nil && p.Ehlo != "" {
		return p.Ehlo
	}
	return smtpprobe.DefaultEhlo()
}

func (s *Server) mailFrom() string {
	m := s.MailFrom
	if p := s.Verifier.cur().Prober; m == "" && p != nil {
		m = p.MailFrom
	}
	if m == "" {
		return "<>"
	}
	return m
}

// runResult is the outcome of one queued address in a RUN.
type runResult struct {
	done  chan struct{}
	lines []string
	out   smtpprobe.Outcome
}

// run verifies the queue: up to RunParallel addresses at a time, their
// progress lines written in queue order.
func (ses *session) run(ctx context.Context) error {
	par := ses.cf.RunParallel
	if par <= 0 {
		par = DefaultRunParallel
	}
	res := make([]*runResult, len(ses.queue))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, e := range ses.queue {
		r := &runResult{done: make(chan struct{})}
		res[i] = r
		req := ses.withSet(e.req)
		req.Timeouts = ses.timeouts
		req.Tag = ses.sid
		if req.Tag == "" {
			req.Tag = req.Email
		}
		id := FormatID(e.id)
		probe := func() {
			defer close(r.done)
			pctx := ctx
			if ses.cf.ProbeTimeout > 0 {
				var cancel context.CancelFunc
				pctx, cancel = context.WithTimeout(ctx, ses.cf.ProbeTimeout)
				defer cancel()
			}
			var cached bool
			r.out, cached = ses.s.Verifier.Verify(pctx, req, func(ev smtpprobe.Event) {
				r.lines = append(r.lines, "* "+id+" "+ev.Stage+" "+sanitize(ev.Text))
			})
			if cached {
				r.lines = append(r.lines, "* "+id+" "+StageCached+" "+r.out.Result.String())
			}
			if r.out.DomainDead {
				why := "the domain has no mail host"
				if r.out.Err != nil {
					why = sanitize(r.out.Err.Error())
				}
				r.lines = append(r.lines, "* "+id+" "+StageNoHost+" "+why)
			}
		}
		if len(ses.queue) == 1 {
			probe() // the common case: no goroutine
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			probe()
		}()
	}
	var werr error
	var b strings.Builder
	b.WriteString("OK")
	keep := ses.queue[:0:0]
	for i, r := range res {
		<-r.done
		if werr == nil {
			for _, l := range r.lines {
				ses.w.WriteString(l)
				ses.w.WriteString("\r\n")
			}
			werr = ses.w.Flush()
		}
		e := ses.queue[i]
		fmt.Fprintf(&b, " %s=%s", FormatID(e.id), r.out.Result)
		// As calloutd: failures and network errors stay queued.
		if (r.out.Retry || r.out.Result == Failure) && !r.out.Result.Definite() {
			keep = append(keep, e)
		}
		if ses.log.Enabled(ctx, slog.LevelDebug) {
			ses.log.Debug("callout", "id", FormatID(e.id), "email", e.req.Email, "result", r.out.Result.String(),
				"host", r.out.Host, "reply", r.out.Reply, "err", r.out.Err)
		}
	}
	wg.Wait()
	ses.queue = keep
	if werr != nil {
		return werr
	}
	return ses.reply(b.String())
}

// withSet gives a request the session's SET values where its VRFY set
// none.
func (ses *session) withSet(req smtpprobe.Request) smtpprobe.Request {
	if req.Ehlo == "" && ses.ehlo != nil {
		req.Ehlo = *ses.ehlo
	}
	if req.MailFrom == "" && ses.mailFrom != nil {
		req.MailFrom = *ses.mailFrom
	}
	if req.StartTLS == 0 && ses.startTLS != nil {
		req.StartTLS = *ses.startTLS
	}
	return req
}

// sanitize keeps a progress text on one line.
func sanitize(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// finish hands what is left in the queue to background completion.
func (ses *session) finish() {
	if ses.cf.NoBackground || len(ses.queue) == 0 {
		return
	}
	for _, e := range ses.queue {
		req := ses.withSet(e.req)
		req.Tag = ses.sid
		if !ses.s.Verifier.Enqueue(req) {
			ses.log.Warn("background queue full: address dropped", "email", req.Email)
		}
	}
	ses.queue = nil
}
