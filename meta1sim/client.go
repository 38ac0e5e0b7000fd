// client.go: the smtps side of the modelled pmilter protocol: connections
// to a pmilter server (pmult), negotiation, many SMTP sessions multiplexed
// on one connection by session id, and smtps's policy_milter `timeout`
// with its flags: abort (the SMTP session ends with 421) and
// accept_but_reconnect (the session goes on unfiltered and the next session
// uses a new connection).
//
// Tunables (Config fields) and defaults:
//   Timeout   5m   wait for each pmilter reply (smtps's policy_milter timeout)
//   MacroMax  8    macros per stage offered (PM_MACROS_MAX)
//   MaxRecord 1 MiB largest record accepted from the server

package meta1sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
)

// Flags are smtps's policy_milter flags.
type Flags uint8

// Flags.
const (
	// FlagAbort: on a timeout the SMTP session is aborted with 421.
	FlagAbort Flags = 1 << iota
	// FlagAcceptButReconnect: on a timeout the session goes on without the
	// pmilter and the next session reconnects.
	FlagAcceptButReconnect
)

// ParseFlags parses "abort", "accept_but_reconnect" (comma separated).
func ParseFlags(s string) (Flags, error) {
	var f Flags
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != ',' {
			continue
		}
		switch w := s[start:i]; w {
		case "":
		case "abort":
			f |= FlagAbort
		case "accept_but_reconnect":
			f |= FlagAcceptButReconnect
		default:
			return 0, fmt.Errorf("unknown policy_milter flag %q (want abort or accept_but_reconnect)", w)
		}
		start = i + 1
	}
	return f, nil
}

// Config configures a Client.
type Config struct {
	Network, Address string
	Timeout          time.Duration
	Flags            Flags
	MacroMax         int
	MaxRecord        int
	Log              *slog.Logger
}

// Client is smtps's policy_milter client. It is safe for concurrent use.
type Client struct {
	cfg    Config
	mu     sync.Mutex
	cur    *clientConn
	nextID atomic.Uint64
	// Reconnects counts connections opened after the first.
	Reconnects atomic.Int64
}

// Dial connects and negotiates.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MacroMax <= 0 {
		cfg.MacroMax = 8
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = cc
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	cc := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cc != nil {
		return cc.close()
	}
	return nil
}

// MacroRequests returns the macro ids the server asked for per stage.
func (c *Client) MacroRequests() [m1.NumStages][]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return [m1.NumStages][]uint32{}
	}
	return c.cur.macros
}

// clientConn is one connection to the pmilter.
type clientConn struct {
	cl   *Client
	nc   net.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	wait map[string]chan m1.Record // session id -> its reply channel
	rplc map[string][]byte         // replacement message collected per session
	open int                       // sessions using this connection
	old  bool                      // replaced after a timeout: close when open == 0
	err  error                     // the reader ended
	done chan struct{}

	macros [m1.NumStages][]uint32
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.cfg.Network, c.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("meta1sim: dial %s: %w", c.cfg.Address, err)
	}
	cc := &clientConn{cl: c, nc: nc, wait: map[string]chan m1.Record{}, rplc: map[string][]byte{}, done: make(chan struct{})}
	var e m1.Encoder
	e.Begin(nil, m1.RTNegotiate, "")
	e.Uint32(m1.FCaps, 1<<m1.NumStages-1)
	e.Uint32(m1.FMacroMax, uint32(c.cfg.MacroMax))
	nc.SetDeadline(time.Now().Add(c.cfg.Timeout))
	if _, err := nc.Write(e.End()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("meta1sim: negotiate: %w", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	rec, err := m1.ReadRecord(br, c.cfg.MaxRecord)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("meta1sim: negotiation reply: %w", err)
	}
	if rec.Type != m1.RTNegReply {
		nc.Close()
		return nil, fmt.Errorf("meta1sim: negotiation answered with %s", m1.TypeName(rec.Type))
	}
	for _, en := range rec.Entries {
		if en.Tag == m1.FMacroList {
			ids, err := m1.Uint32sOf(en)
			if err != nil || len(ids) == 0 || ids[0] >= m1.NumStages {
				nc.Close()
				return nil, fmt.Errorf("meta1sim: bad macro list in negotiation reply: %v", err)
			}
			cc.macros[ids[0]] = append(cc.macros[ids[0]], ids[1:]...)
		}
	}
	nc.SetDeadline(time.Time{})
	go cc.read(br)
	return cc, nil
}

func (cc *clientConn) read(br *bufio.Reader) {
	defer close(cc.done)
	for {
		rec, err := m1.ReadRecord(br, cc.cl.cfg.MaxRecord)
		if err != nil {
			cc.mu.Lock()
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("meta1sim: connection closed: %w", err)
			}
			cc.err = err
			for _, ch := range cc.wait {
				close(ch)
			}
			cc.wait = map[string]chan m1.Record{}
			cc.mu.Unlock()
			return
		}
		cc.mu.Lock()
		switch rec.Type {
		case m1.RTMsgReplace:
			for _, en := range rec.Entries {
				if en.Tag == m1.FChunk {
					cc.rplc[rec.Session] = append(cc.rplc[rec.Session], en.Val...)
				}
			}
		case m1.RTReply:
			if ch, ok := cc.wait[rec.Session]; ok {
				delete(cc.wait, rec.Session)
				ch <- rec
			} else {
				cc.cl.cfg.Log.Debug("late or unexpected reply ignored", "session", rec.Session)
				delete(cc.rplc, rec.Session)
			}
		default:
			cc.cl.cfg.Log.Warn("unexpected record from the pmilter", "type", m1.TypeName(rec.Type))
		}
		cc.mu.Unlock()
	}
}

func (cc *clientConn) write(b []byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.nc.SetWriteDeadline(time.Now().Add(cc.cl.cfg.Timeout))
	_, err := cc.nc.Write(b)
	return err
}

func (cc *clientConn) close() error {
	err := cc.nc.Close()
	<-cc.done
	return err
}

// release ends one session's use of the connection.
func (cc *clientConn) release() {
	cc.mu.Lock()
	cc.open--
	closeIt := cc.old && cc.open == 0
	cc.mu.Unlock()
	if closeIt {
		cc.close()
	}
}

// NewSession starts an SMTP session with a fresh session id (its records
// go out from Connect on). After an accept_but_reconnect timeout, the
// first new session opens a new connection.
func (c *Client) NewSession(ctx context.Context) (*Session, error) {
	return c.NewSessionID(ctx, "S"+strconv.FormatUint(c.nextID.Add(1), 10))
}

// NewSessionID is NewSession with a given session id.
func (c *Client) NewSessionID(ctx context.Context, id string) (*Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || c.cur.dead() {
		if c.cur != nil {
			c.cur.retire()
		}
		cc, err := c.dial(ctx)
		if err != nil {
			return nil, err
		}
		c.Reconnects.Add(1)
		c.cur = cc
	}
	cc := c.cur
	cc.mu.Lock()
	cc.open++
	cc.mu.Unlock()
	return &Session{c: c, cc: cc, id: id, Macros: map[string]string{}}, nil
}

func (cc *clientConn) dead() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.old || cc.err != nil
}

// retire marks the connection for closing once its sessions are over.
func (cc *clientConn) retire() {
	cc.mu.Lock()
	cc.old = true
	closeIt := cc.open == 0
	cc.mu.Unlock()
	if closeIt {
		cc.close()
	}
}

// Session is one SMTP session as smtps runs it against the pmilter.
type Session struct {
	c  *Client
	cc *clientConn
	id string
	// Macros holds the values smtps has for MeTA1 macros, by canonical
	// name ("taid", "auth_type", …); those the pmilter asked for are sent.
	Macros map[string]string

	unfiltered bool // accept_but_reconnect timeout: no more pmilter
	closed     bool
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Reply is the pmilter's answer to one request.
type Reply struct {
	Code        uint32
	Text        string
	RcptAdd     []RcptAdd
	RcptDel     []RcptDel
	HdrMods     []m1.HdrMod
	Replacement []byte // nil: none
	// TimedOut: no answer within the timeout (or the connection was lost);
	// Code is what the flags made of it, Err the cause.
	TimedOut bool
	Err      error
}

// RcptAdd is a recipient to add.
type RcptAdd struct{ Addr, Args string }

// RcptDel is a recipient to delete.
type RcptDel struct {
	Index uint32
	Addr  string
}

// SMTP returns what smtps would answer the client, for the given default
// success reply.
func (r Reply) SMTP(ok string) string {
	switch r.Code {
	case m1.ReplyReject:
		if r.Text != "" {
			return r.Text
		}
		return "550 5.7.1 Command rejected"
	case m1.ReplyTempfail:
		if r.Text != "" {
			return r.Text
		}
		return "451 4.7.1 Try again later"
	case m1.ReplySSD:
		if r.Text != "" {
			return r.Text
		}
		return "421 4.7.0 Closing connection"
	}
	return ok
}

// Objects reports whether the reply stops the command or message.
func (r Reply) Objects() bool {
	return r.Code == m1.ReplyReject || r.Code == m1.ReplyTempfail || r.Code == m1.ReplySSD || r.Code == m1.ReplyDiscard
}

// ErrClosed is returned for requests on a closed session.
var ErrClosed = errors.New("meta1sim: session closed")

func (s *Session) begin(t uint32) *m1.Encoder {
	e := &m1.Encoder{}
	e.Begin(nil, t, s.id)
	return e
}

func (s *Session) addMacros(e *m1.Encoder, st uint32) {
	for _, id := range s.cc.macros[st] {
		name, ok := m1.MacroName(id)
		if !ok {
			continue
		}
		if v, ok := s.Macros[name]; ok {
			e.IntString(m1.FMacro, id, v)
		}
	}
}

// request sends a record and waits for its reply, applying the timeout.
func (s *Session) request(ctx context.Context, b []byte) (Reply, error) {
	if s.closed {
		return Reply{}, ErrClosed
	}
	if s.unfiltered {
		return Reply{Code: m1.ReplyContinue}, nil
	}
	cc := s.cc
	ch := make(chan m1.Record, 1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return s.timeout(err)
	}
	cc.wait[s.id] = ch
	delete(cc.rplc, s.id)
	cc.mu.Unlock()
	if err := cc.write(b); err != nil {
		cc.mu.Lock()
		delete(cc.wait, s.id)
		cc.mu.Unlock()
		return s.timeout(err)
	}
	t := time.NewTimer(s.c.cfg.Timeout)
	defer t.Stop()
	select {
	case rec, ok := <-ch:
		if !ok {
			return s.timeout(errors.New("connection lost"))
		}
		return s.decode(rec)
	case <-t.C:
		cc.mu.Lock()
		delete(cc.wait, s.id)
		cc.mu.Unlock()
		return s.timeout(fmt.Errorf("no reply within %v", s.c.cfg.Timeout))
	case <-ctx.Done():
		cc.mu.Lock()
		delete(cc.wait, s.id)
		cc.mu.Unlock()
		return Reply{}, ctx.Err()
	}
}

// timeout applies the policy_milter flags to a missing reply.
func (s *Session) timeout(cause error) (Reply, error) {
	f := s.c.cfg.Flags
	s.c.cfg.Log.Info("no reply from the pmilter", "session", s.id, "cause", cause)
	switch {
	case f&FlagAbort != 0:
		s.Close()
		return Reply{Code: m1.ReplySSD, Text: "421 4.3.0 policy milter not responding, closing", TimedOut: true, Err: cause}, nil
	case f&FlagAcceptButReconnect != 0:
		s.unfiltered = true
		s.cc.retire()
		return Reply{Code: m1.ReplyContinue, TimedOut: true, Err: cause}, nil
	}
	// Neither flag (an assumption): a temporary failure.
	return Reply{Code: m1.ReplyTempfail, Text: "451 4.3.0 policy milter not responding", TimedOut: true, Err: cause}, nil
}

func (s *Session) decode(rec m1.Record) (Reply, error) {
	var r Reply
	for _, en := range rec.Entries {
		var err error
		switch en.Tag {
		case m1.FReplyCode:
			r.Code, err = m1.Uint32Of(en)
		case m1.FReplyText:
			r.Text = string(en.Val)
		case m1.FRcptAdd:
			a, args, _ := cut(string(en.Val))
			r.RcptAdd = append(r.RcptAdd, RcptAdd{a, args})
		case m1.FRcptDel:
			var d RcptDel
			d.Index, d.Addr, err = m1.IntStringOf(en)
			r.RcptDel = append(r.RcptDel, d)
		case m1.FHdrMod:
			var h m1.HdrMod
			h, err = m1.HdrModOf(en)
			r.HdrMods = append(r.HdrMods, h)
		case m1.FMsgReplace:
			s.cc.mu.Lock()
			r.Replacement = append([]byte{}, s.cc.rplc[s.id]...)
			delete(s.cc.rplc, s.id)
			s.cc.mu.Unlock()
		}
		if err != nil {
			return r, fmt.Errorf("meta1sim: session %s: bad reply: %w", s.id, err)
		}
	}
	if r.Code == m1.ReplySSD {
		s.closed = true
		s.release()
	}
	return r, nil
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Connect opens the session at the pmilter.
func (s *Session) Connect(ctx context.Context, addr netip.Addr, port int, hostname string) (Reply, error) {
	e := s.begin(m1.RTConnect)
	if addr.IsValid() {
		e.Bytes(m1.FClientAddr, addr.AsSlice())
	}
	e.Uint32(m1.FClientPort, uint32(port))
	if hostname != "" {
		e.String(m1.FHostname, hostname)
	}
	s.addMacros(e, m1.StageConnect)
	return s.request(ctx, e.End())
}

// Ehlo sends the EHLO/HELO argument.
func (s *Session) Ehlo(ctx context.Context, arg string) (Reply, error) {
	e := s.begin(m1.RTEhlo)
	e.String(m1.FHelo, arg)
	s.addMacros(e, m1.StageEhlo)
	return s.request(ctx, e.End())
}

// Mail sends MAIL FROM (addr as given, "<a@b>") with ESMTP parameters.
func (s *Session) Mail(ctx context.Context, addr string, args ...string) (Reply, error) {
	e := s.begin(m1.RTMail)
	e.String(m1.FAddr, addr)
	for _, a := range args {
		e.String(m1.FArg, a)
	}
	s.addMacros(e, m1.StageMail)
	return s.request(ctx, e.End())
}

// Rcpt sends RCPT TO with the recipient's index in the transaction.
func (s *Session) Rcpt(ctx context.Context, idx int, addr string, args ...string) (Reply, error) {
	e := s.begin(m1.RTRcpt)
	e.String(m1.FAddr, addr)
	for _, a := range args {
		e.String(m1.FArg, a)
	}
	e.Uint32(m1.FRcptIdx, uint32(idx))
	s.addMacros(e, m1.StageRcpt)
	return s.request(ctx, e.End())
}

// Data sends the DATA stage.
func (s *Session) Data(ctx context.Context) (Reply, error) {
	e := s.begin(m1.RTData)
	s.addMacros(e, m1.StageData)
	return s.request(ctx, e.End())
}

// Msg sends one chunk of the raw message (CRLF text).
func (s *Session) Msg(ctx context.Context, chunk []byte) (Reply, error) {
	e := s.begin(m1.RTMsg)
	e.Bytes(m1.FChunk, chunk)
	return s.request(ctx, e.End())
}

// Dot ends the message.
func (s *Session) Dot(ctx context.Context) (Reply, error) {
	e := s.begin(m1.RTDot)
	s.addMacros(e, m1.StageDot)
	return s.request(ctx, e.End())
}

// Message sends a whole message in chunks of at most chunk bytes (0:
// m1.ChunkSize) and the dot; a chunk reply that objects ends it early (no
// dot is sent: that reply is the message's).
func (s *Session) Message(ctx context.Context, msg []byte, chunk int) (Reply, error) {
	if chunk <= 0 {
		chunk = m1.ChunkSize
	}
	for len(msg) > 0 {
		n := min(chunk, len(msg))
		r, err := s.Msg(ctx, msg[:n])
		if err != nil || r.Objects() || r.TimedOut {
			return r, err
		}
		msg = msg[n:]
	}
	return s.Dot(ctx)
}

// send writes a record that gets no reply.
func (s *Session) send(t uint32) error {
	if s.closed || s.unfiltered {
		return nil
	}
	e := s.begin(t)
	return s.cc.write(e.End())
}

// Abort ends the transaction (RSET, or a transaction smtps rejected).
func (s *Session) Abort() error { return s.send(m1.RTAbort) }

// Close ends the session (QUIT or connection end).
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	e := s.begin(m1.RTClose)
	err := s.cc.write(e.End())
	s.closed = true
	s.release()
	return err
}

func (s *Session) release() {
	s.cc.mu.Lock()
	delete(s.cc.wait, s.id)
	delete(s.cc.rplc, s.id)
	s.cc.mu.Unlock()
	s.cc.release()
}

// Raw writes bytes as they are on the session's connection (for tests of
// bad input).
func (s *Session) Raw(b []byte) error { return s.cc.write(b) }

// Wait waits for the next reply to this session without sending anything
// (after Raw).
func (s *Session) Wait(ctx context.Context) (Reply, error) {
	ch := make(chan m1.Record, 1)
	s.cc.mu.Lock()
	s.cc.wait[s.id] = ch
	s.cc.mu.Unlock()
	t := time.NewTimer(s.c.cfg.Timeout)
	defer t.Stop()
	select {
	case rec, ok := <-ch:
		if !ok {
			return Reply{}, errors.New("meta1sim: connection lost")
		}
		return s.decode(rec)
	case <-t.C:
		return Reply{TimedOut: true}, errors.New("meta1sim: no reply")
	case <-ctx.Done():
		return Reply{}, ctx.Err()
	}
}
