// conn.go: one smtps connection: negotiation, then records of many SMTP
// sessions multiplexed by session id. One goroutine reads and dispatches;
// each open SMTP session has a goroutine of its own that runs its records
// in order through the engine and writes the replies. A record that breaks
// one session (unknown type, bad fields, a session never opened) costs that
// session only: it is logged and answered 421; only a record whose framing
// cannot be followed ends the connection.

package meta1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/macros"
)

type conn struct {
	srv      *Server
	nc       net.Conn
	id       string
	listener string // the name of the listener it came in on ("": unnamed)
	log      *slog.Logger
	br       *bufio.Reader

	ctx    context.Context
	cancel context.CancelFunc

	wmu sync.Mutex

	mu       sync.Mutex
	sessions map[string]*session
	wg       sync.WaitGroup
	done     bool // reader finished: no more sessions

	negotiated bool
	macroIDs   [macros.M1NumStages][]uint32
}

// Drain implements connserve.Conn: shutdown began; the connection closes
// as soon as it carries no session.
func (c *conn) Drain() { c.closeIfIdle() }

// Close implements connserve.Conn.
func (c *conn) Close() { c.nc.Close() }

// Serve implements connserve.Conn: it runs the connection to its end.
func (c *conn) Serve(ctx context.Context) {
	c.ctx, c.cancel = context.WithCancel(ctx)
	defer func() {
		c.cancel()
		c.mu.Lock()
		c.done = true
		for id, s := range c.sessions {
			delete(c.sessions, id)
			s.gone = true
			close(s.in)
		}
		c.mu.Unlock()
		c.wg.Wait()
		c.nc.Close()
	}()
	defer func() {
		if v := recover(); v != nil { // a bug must cost one connection, not the process
			c.log.Error("internal error, smtps connection closed", "panic", fmt.Sprint(v))
		}
	}()
	for {
		var timeout time.Duration
		if !c.negotiated {
			timeout = orDefault(c.srv.NegotiateTimeout, DefaultNegotiateTimeout)
		} else {
			timeout = c.srv.IdleTimeout
		}
		if timeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(timeout))
		} else {
			c.nc.SetReadDeadline(time.Time{})
		}
		rec, err := pmilter.ReadRecord(c.br, c.srv.MaxRecord)
		if err != nil {
			var re *pmilter.RecordError
			if errors.As(err, &re) {
				c.badRecord(re)
				continue
			}
			c.readError(err, timeout)
			return
		}
		if !c.negotiated {
			if rec.Type != pmilter.RTNegotiate {
				c.log.Warn("smtps sent a record before negotiating, closing", "type", pmilter.TypeName(rec.Type), "session", rec.Session)
				return
			}
			if err := c.negotiate(rec); err != nil {
				c.log.Warn("negotiation failed, closing", "err", err)
				return
			}
			continue
		}
		c.dispatch(rec)
	}
}

func (c *conn) readError(err error, timeout time.Duration) {
	var ne net.Error
	var fe *pmilter.FrameError
	switch {
	case err == io.EOF:
		c.log.Debug("smtps closed the connection", "sessions", c.openSessions())
	case errors.As(err, &fe), errors.Is(err, pmilter.ErrTruncated):
		c.log.Warn("unreadable record from smtps, closing the connection", "err", err, "sessions_dropped", c.openSessions())
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Warn("smtps idle too long, closing", "timeout", timeout)
	case errors.Is(err, net.ErrClosed):
		c.log.Info("connection closed by shutdown")
	default:
		c.log.Warn("read from smtps failed, closing", "err", err)
	}
}

func (c *conn) openSessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

// negotiate answers smtps's negotiation: the stages it offered, and the
// macro ids wanted per stage.
func (c *conn) negotiate(rec pmilter.Record) error {
	caps := uint32(1<<pmilter.NumStages - 1)
	macroMax := 0
	for _, en := range rec.Entries {
		switch en.Tag {
		case pmilter.FCaps:
			v, err := pmilter.Uint32Of(en)
			if err != nil {
				return err
			}
			caps = v
		case pmilter.FMacroMax:
			v, err := pmilter.Uint32Of(en)
			if err != nil {
				return err
			}
			macroMax = int(v)
		}
	}
	var e pmilter.Encoder
	e.Begin(nil, pmilter.RTNegReply, "")
	e.Uint32(pmilter.FCaps, caps&(1<<pmilter.NumStages-1))
	for st := macros.Meta1Stage(0); st < macros.M1NumStages; st++ {
		names := c.srv.Macros[st]
		if len(names) == 0 {
			continue
		}
		if macroMax > 0 && len(names) > macroMax {
			c.log.Warn("smtps allows fewer macros per stage than configured, list truncated",
				"stage", st.String(), "smtps_max", macroMax, "configured", len(names))
			names = names[:macroMax]
		}
		ids := []uint32{uint32(st)}
		for _, n := range names {
			if id, ok := pmilter.MacroID(n); ok {
				ids = append(ids, id)
				c.macroIDs[st] = append(c.macroIDs[st], id)
			}
		}
		e.Uint32s(pmilter.FMacroList, ids...)
	}
	c.negotiated = true
	c.log.Debug("negotiated", "version", rec.Version, "caps", fmt.Sprintf("0x%x", caps), "smtps_macro_max", macroMax)
	return c.write(e.End())
}

// dispatch hands a record to its session, opening or closing sessions.
func (c *conn) dispatch(rec pmilter.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[rec.Session]
	switch rec.Type {
	case pmilter.RTNegotiate:
		c.log.Warn("second negotiation on one smtps connection ignored")
		return
	case pmilter.RTConnect:
		if s != nil {
			c.log.Warn("connect for a session already open: both dropped", "session", rec.Session)
			c.dropLocked(s)
			c.writeSSD(rec.Session, "")
			return
		}
		if c.srv.cs.Closing() {
			c.writeSSD(rec.Session, "421 4.3.2 pmult shutting down")
			return
		}
		if c.srv.MaxSessions > 0 && c.srv.sessions.Load() >= int64(c.srv.MaxSessions) {
			c.log.Warn("session limit reached (max_sessions), session refused", "session", rec.Session,
				"max_sessions", c.srv.MaxSessions)
			c.writeSSD(rec.Session, "421 4.3.2 Too many sessions, try again later")
			return
		}
		n := c.srv.sessions.Add(1)
		if c.srv.SoftSessions > 0 && n > int64(c.srv.SoftSessions) {
			c.log.Info("above the soft session limit (max_sessions_soft)", "sessions", n, "soft", c.srv.SoftSessions)
		}
		s = c.newSession(rec.Session)
		c.sessions[rec.Session] = s
		c.wg.Add(1)
		go s.run()
	case pmilter.RTEhlo, pmilter.RTMail, pmilter.RTRcpt, pmilter.RTData, pmilter.RTMsg, pmilter.RTDot, pmilter.RTAbort, pmilter.RTClose:
		if s == nil {
			if rec.Type == pmilter.RTClose {
				c.log.Debug("close for a session not open", "session", rec.Session)
				return
			}
			c.log.Warn("record for a session never opened (or already dropped): answered 421",
				"type", pmilter.TypeName(rec.Type), "session", rec.Session)
			if rec.Type != pmilter.RTAbort {
				c.writeSSD(rec.Session, "")
			}
			return
		}
	default:
		c.log.Warn("unknown record type: session dropped with 421", "type", pmilter.TypeName(rec.Type), "session", rec.Session)
		if s != nil {
			c.dropLocked(s)
		}
		c.writeSSD(rec.Session, "")
		return
	}
	if rec.Type == pmilter.RTClose && s.busy.Load() {
		// smtps gave up waiting (its timeout): stop the work in progress.
		s.cancel()
	}
	select {
	case s.in <- rec:
	default:
		c.log.Warn("smtps sent more records than a session may queue without replies: session dropped with 421",
			"session", rec.Session, "queue", cap(s.in))
		c.dropLocked(s)
		c.writeSSD(rec.Session, "")
		return
	}
	if rec.Type == pmilter.RTClose {
		c.removeLocked(s)
	}
}

// badRecord handles a well-framed record with malformed entries.
func (c *conn) badRecord(re *pmilter.RecordError) {
	if !re.HasSession {
		c.log.Warn("malformed record without a session id: ignored", "err", re.Msg)
		return
	}
	c.log.Warn("malformed record: session dropped with 421", "session", re.Session, "err", re.Msg)
	c.mu.Lock()
	if s := c.sessions[re.Session]; s != nil {
		c.dropLocked(s)
	}
	c.mu.Unlock()
	c.writeSSD(re.Session, "")
}

// removeLocked takes s out of the map and ends its input (c.mu held).
func (c *conn) removeLocked(s *session) {
	if s.gone {
		return
	}
	if c.sessions[s.id] == s {
		delete(c.sessions, s.id)
	}
	s.gone = true
	close(s.in)
}

// dropLocked ends s at once: its work in progress is cancelled.
func (c *conn) dropLocked(s *session) {
	s.cancel()
	c.removeLocked(s)
}

// sessionEnded is called by a session that ends itself (a 421 it
// answered). It reports whether the session was still in the map.
func (c *conn) sessionEnded(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.gone {
		if c.sessions[s.id] == s {
			delete(c.sessions, s.id)
		}
		s.gone = true
		close(s.in)
	}
}

// closeIfIdle closes the connection during shutdown when it carries no
// session.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sessions) == 0 {
		c.nc.Close()
	}
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(orDefault(c.srv.WriteTimeout, DefaultWriteTimeout)))
	if _, err := c.nc.Write(b); err != nil {
		c.nc.Close() // the reader sees it and ends the connection
		return fmt.Errorf("write to smtps: %w", err)
	}
	return nil
}

// writeSSD answers a session 421 (shut the SMTP session down).
func (c *conn) writeSSD(session, text string) {
	if text == "" {
		text = "421 4.7.0 pmult: policy milter protocol error, closing session"
	}
	var e pmilter.Encoder
	e.Begin(nil, pmilter.RTReply, session)
	e.Uint32(pmilter.FReplyCode, pmilter.ReplySSD)
	e.String(pmilter.FReplyText, text)
	if err := c.write(e.End()); err != nil {
		c.log.Warn("cannot answer smtps", "err", err)
	}
}
