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

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
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
func (c *Client) MacroRequests() [pmilter.NumStages][]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return [pmilter.NumStages][]uint32{}
	}
	return c.cur.macros
}

// clientConn is one connection to the pmilter.
type clientConn struct {
	cl   *Client
	nc   net.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	wait map[string]chan pmilter.Record // session id -> its reply channel
	rplc map[string][]byte              // replacement message collected per session
	open int                            // sessions using this connection
	old  bool                           // replaced after a timeout: close when open == 0
	err  error                          // the reader ended
	done chan struct{}

	macros [pmilter.NumStages][]uint32
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.cfg.Network, c.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("meta1sim: dial %s: %w", c.cfg.Address, err)
	}
	cc := &clientConn{cl: c, nc: nc, wait: map[string]chan pmilter.Record{}, rplc: map[string][]byte{}, done: make(chan struct{})}
	var e pmilter.Encoder
	e.Begin(nil, pmilter.RTNegotiate, "")
	e.Uint32(pmilter.FCaps, 1<<pmilter.NumStages-1)
	e.Uint32(pmilter.FMacroMax, uint32(c.cfg.MacroMax))
	nc.SetDeadline(time.Now().Add(c.cfg.Timeout))
	if _, err := nc.Write(e.End()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("meta1sim: negotiate: %w", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	rec, err := pmilter.ReadRecord(br, c.cfg.MaxRecord)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("meta1sim: negotiation reply: %w", err)
	}
	if rec.Type != pmilter.RTNegReply {
		nc.Close()
		return nil, fmt.Errorf("meta1sim: negotiation answered with %s", pmilter.TypeName(rec.Type))
	}
	for _, en := range rec.Entries {
		if en.Tag == pmilter.FMacroList {
			ids, err := pmilter.Uint32sOf(en)
			if err != nil || len(ids) == 0 || ids[0] >= pmilter.NumStages {
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
		rec, err := pmilter.ReadRecord(br, cc.cl.cfg.MaxRecord)
		if err != nil {
			cc.mu.Lock()
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("meta1sim: connection closed: %w", err)
			}
			cc.err = err
			for _, ch := range cc.wait {
				close(ch)
			}
			cc.wait = map[string]chan pmilter.Record{}
			cc.mu.Unlock()
			return
		}
		cc.mu.Lock()
		switch rec.Type {
		case pmilter.RTMsgReplace:
			for _, en := range rec.Entries {
				if en.Tag == pmilter.FChunk {
					cc.rplc[rec.Session] = append(cc.rplc[rec.Session], en.Val...)
				}
			}
		case pmilter.RTReply:
			if ch, ok := cc.wait[rec.Session]; ok {
				delete(cc.wait, rec.Session)
				ch <- rec
			} else {
				cc.cl.cfg.Log.Debug("late or unexpected reply ignored", "session", rec.Session)
				delete(cc.rplc, rec.Session)
			}
		default:
			cc.cl.cfg.Log.Warn("unexpected record from the pmilter", "type", pmilter.TypeName(rec.Type))
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
	HdrMods     []pmilter.HdrMod
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
	case pmilter.ReplyReject:
		if r.Text != "" {
			return r.Text
		}
		return "550 5.7.1 Command rejected"
	case pmilter.ReplyTempfail:
		if r.Text != "" {
			return r.Text
		}
		return "451 4.7.1 Try again later"
	case pmilter.ReplySSD:
		if r.Text != "" {
			return r.Text
		}
		return "421 4.7.0 Closing connection"
	}
	return ok
}

// Objects reports whether the reply stops the command or message.
func (r Reply) Objects() bool {
	return r.Code == pmilter.ReplyReject || r.Code == pmilter.ReplyTempfail || r.Code == pmilter.ReplySSD || r.Code == pmilter.ReplyDiscard
}

// ErrClosed is returned for requests on a closed session.
var ErrClosed = errors.New("meta1sim: session closed")

func (s *Session) begin(t uint32) *pmilter.Encoder {
	e := &pmilter.Encoder{}
	e.Begin(nil, t, s.id)
	return e
}

func (s *Session) addMacros(e *pmilter.Encoder, st uint32) {
	for _, id := range s.cc.macros[st] {
		name, ok := pmilter.MacroName(id)
		if !ok {
			continue
		}
		if v, ok := s.Macros[name]; ok {
			e.IntString(pmilter.FMacro, id, v)
		}
	}
}

// request sends a record and waits for its reply, applying the timeout.
func (s *Session) request(ctx context.Context, b []byte) (Reply, error) {
	if s.closed {
		return Reply{}, ErrClosed
	}
	if s.unfiltered {
		return Reply{Code: pmilter.ReplyContinue}, nil
	}
	cc := s.cc
	ch := make(chan pmilter.Record, 1)
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
		return Reply{Code: pmilter.ReplySSD, Text: "421 4.3.0 policy milter not responding, closing", TimedOut: true, Err: cause}, nil
	case f&FlagAcceptButReconnect != 0:
		s.unfiltered = true
		s.cc.retire()
		return Reply{Code: pmilter.ReplyContinue, TimedOut: true, Err: cause}, nil
	}
	// Neither flag (an assumption): a temporary failure.
	return Reply{Code: pmilter.ReplyTempfail, Text: "451 4.3.0 policy milter not responding", TimedOut: true, Err: cause}, nil
}

func (s *Session) decode(rec pmilter.Record) (Reply, error) {
	var r Reply
	for _, en := range rec.Entries {
		var err error
		switch en.Tag {
		case pmilter.FReplyCode:
			r.Code, err = pmilter.Uint32Of(en)
		case pmilter.FReplyText:
			r.Text = string(en.Val)
		case pmilter.FRcptAdd:
			a, args, _ := cut(string(en.Val))
			r.RcptAdd = append(r.RcptAdd, RcptAdd{a, args})
		case pmilter.FRcptDel:
			var d RcptDel
			d.Index, d.Addr, err = pmilter.IntStringOf(en)
			r.RcptDel = append(r.RcptDel, d)
		case pmilter.FHdrMod:
			var h pmilter.HdrMod
			h, err = pmilter.HdrModOf(en)
			r.HdrMods = append(r.HdrMods, h)
		case pmilter.FMsgReplace:
			s.cc.mu.Lock()
			r.Replacement = append([]byte{}, s.cc.rplc[s.id]...)
			delete(s.cc.rplc, s.id)
			s.cc.mu.Unlock()
		}
		if err != nil {
			return r, fmt.Errorf("meta1sim: session %s: bad reply: %w", s.id, err)
		}
	}
	if r.Code == pmilter.ReplySSD {
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
	e := s.begin(pmilter.RTConnect)
	if addr.IsValid() {
		e.Bytes(pmilter.FClientAddr, addr.AsSlice())
	}
	e.Uint32(pmilter.FClientPort, uint32(port))
	if hostname != "" {
		e.String(pmilter.FHostname, hostname)
	}
	s.addMacros(e, pmilter.StageConnect)
	return s.request(ctx, e.End())
}

// Ehlo sends the EHLO/HELO argument.
func (s *Session) Ehlo(ctx context.Context, arg string) (Reply, error) {
	e := s.begin(pmilter.RTEhlo)
	e.String(pmilter.FHelo, arg)
	s.addMacros(e, pmilter.StageEhlo)
	return s.request(ctx, e.End())
}

// Mail sends MAIL FROM (addr as given, "<a@b>") with ESMTP parameters.
func (s *Session) Mail(ctx context.Context, addr string, args ...string) (Reply, error) {
	e := s.begin(pmilter.RTMail)
	e.String(pmilter.FAddr, addr)
	for _, a := range args {
		e.String(pmilter.FArg, a)
	}
	s.addMacros(e, pmilter.StageMail)
	return s.request(ctx, e.End())
}

// Rcpt sends RCPT TO with the recipient's index in the transaction.
func (s *Session) Rcpt(ctx context.Context, idx int, addr string, args ...string) (Reply, error) {
	e := s.begin(pmilter.RTRcpt)
	e.String(pmilter.FAddr, addr)
	for _, a := range args {
		e.String(pmilter.FArg, a)
	}
	e.Uint32(pmilter.FRcptIdx, uint32(idx))
	s.addMacros(e, pmilter.StageRcpt)
	return s.request(ctx, e.End())
}

// Data sends the DATA stage.
func (s *Session) Data(ctx context.Context) (Reply, error) {
	e := s.begin(pmilter.RTData)
	s.addMacros(e, pmilter.StageData)
	return s.request(ctx, e.End())
}

// Msg sends one chunk of the raw message (CRLF text).
func (s *Session) Msg(ctx context.Context, chunk []byte) (Reply, error) {
	e := s.begin(pmilter.RTMsg)
	e.Bytes(pmilter.FChunk, chunk)
	return s.request(ctx, e.End())
}

// Dot ends the message.
func (s *Session) Dot(ctx context.Context) (Reply, error) {
	e := s.begin(pmilter.RTDot)
	s.addMacros(e, pmilter.StageDot)
	return s.request(ctx, e.End())
}

// Message sends a whole message in chunks of at most chunk bytes (0:
// pmilter.ChunkSize) and the dot; a chunk reply that objects ends it early (no
// dot is sent: that reply is the message's).
func (s *Session) Message(ctx context.Context, msg []byte, chunk int) (Reply, error) {
	if chunk <= 0 {
		chunk = pmilter.ChunkSize
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
func (s *Session) Abort() error { return s.send(pmilter.RTAbort) }

// Close ends the session (QUIT or connection end).
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	e := s.begin(pmilter.RTClose)
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
	ch := make(chan pmilter.Record, 1)
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
