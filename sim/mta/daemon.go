// daemon.go: daemon mode: an SMTP server on a listening socket whose
// sessions go through the filter, one Session per connection. The client's
// address is the CONNECT event's (sent as the connection opens, as Postfix
// does). Administrative commands work on the connection too.
//
// Tunables (Server): Once (serve one session, then return its result, as
// mailfromd's mtasim --daemon does), IdleTimeout (default 5 minutes per
// command).

package mtasim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server is the daemon-mode SMTP server. The client's host name is its
// address (no DNS lookups).
type Server struct {
	Config      *Config
	Once        bool
	IdleTimeout time.Duration
	Log         *slog.Logger
	// Trace, when set, receives the transcripts (sessions interleave).
	Trace *syncWriter
}

// Serve accepts connections until ctx ends (or, with Once, until the first
// session ended). It returns the first session's error with Once, else
// nil after ctx ended.
func (srv *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := srv.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		if srv.Once {
			ln.Close()
			return srv.serveConn(ctx, nc)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.serveConn(ctx, nc); err != nil {
				log.Warn("session", "client", nc.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (srv *Server) serveConn(ctx context.Context, nc net.Conn) error {
	defer nc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	cfg := *srv.Config
	cfg.Sender = senderOf(nc.RemoteAddr())
	if la, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		cfg.DaemonAddr = la.IP.String()
	}
	idle := srv.IdleTimeout
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	in := &connReader{nc: nc, br: bufio.NewReader(nc), idle: idle}
	opt := ScriptOptions{CRLF: true, Interactive: true}
	if srv.Trace != nil {
		opt.Trace = srv.Trace
	}
	err := RunScript(ctx, &cfg, in, nc, opt)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		fmt.Fprintf(nc, "421 4.4.2 idle timeout\r\n")
	}
	return err
}

// senderOf turns a client address into the sender socket.
func senderOf(a net.Addr) *Sender {
	switch a := a.(type) {
	case *net.TCPAddr:
		s := &Sender{Family: '4', Host: a.IP.String(), Addr: a.IP.String(), Port: uint16(a.Port)}
		if a.IP.To4() == nil {
			s.Family = '6'
		}
		return s
	case *net.UnixAddr:
		return &Sender{Family: 'L', Host: "localhost", Addr: a.Name}
	}
	return &Sender{Family: 'U', Host: "localhost"}
}

type connReader struct {
	nc   net.Conn
	br   *bufio.Reader
	idle time.Duration
}

func (c *connReader) ReadLine() (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(c.idle))
	s, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return trimEOL(s), nil
}

func trimEOL(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
	}
	if n := len(s); n > 0 && s[n-1] == '\r' {
		s = s[:n-1]
	}
	return s
}

// syncWriter serialises writes of concurrent sessions.
type syncWriter struct {
	mu sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

// NewSyncWriter wraps w for concurrent use.
func NewSyncWriter(w interface{ Write([]byte) (int, error) }) *syncWriter { return &syncWriter{w: w} }

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
