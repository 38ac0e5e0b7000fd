// testmilter.go: the test milter server and its reply helpers.

package testmilter

import (
	"net"
	"sync"

	mp "github.com/mailmux/mailmux/milterproto"
)

// Handler answers one command. It returns the reply packets to write (for
// EOM: edits, then the final reply). Returning nil gives the default: no
// reply for commands that have none or that were negotiated NR, CONTINUE
// otherwise. Returning Close ends the connection without a reply.
type Handler func(c *Conn, p mp.Packet) []mp.Packet

// Close is a Handler result that closes the connection.
var Close = []mp.Packet{{Code: 0}}

// Server is a test milter.
type Server struct {
	Version  uint32      // version to answer with (0: min(6, MTA's))
	Actions  mp.Action   // actions requested
	Protocol mp.Protocol // protocol bits requested (NO*, NR*, SKIP, …)
	SymLists []mp.SymList
	Handler  Handler

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// Connections counts accepted connections.
	Connections int
}

// Conn is one connection's state, visible to the handler.
type Conn struct {
	Version  uint32
	Actions  mp.Action
	Protocol mp.Protocol
	Macros   map[string]string // accumulated macros
	Headers  [][2]string
	Body     []byte
	Log      []string // one line per command received
	nc       net.Conn
}

// Listen starts the server on network/addr ("tcp", "127.0.0.1:0").
func (s *Server) Listen(network, addr string) (net.Addr, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.ln = ln
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return ln.Addr(), nil
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = struct{}{}
		s.Connections++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(nc)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// Stop closes the listener and every connection and waits for them.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Count returns the number of accepted connections.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Connections
}

// Write writes raw bytes on the connection (for garbage tests).
func (c *Conn) Write(b []byte) error { _, err := c.nc.Write(b); return err }

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	r := mp.NewReader(nc, 1<<20)
	c := &Conn{Macros: map[string]string{}, nc: nc}
	var out []byte
	for {
		p, err := r.ReadPacket()
		if err != nil {
			return
		}
		out = out[:0]
		switch p.Code {
		case mp.CmdOptNeg:
			o, err := mp.ParseOptNeg(p.Data)
			if err != nil {
				return
			}
			v := s.Version
			if v == 0 {
				v = min(o.Version, 6)
			}
			c.Version, c.Actions, c.Protocol = v, s.Actions&o.Actions, s.Protocol&o.Protocol
			rep := mp.OptNeg{Version: v, Actions: c.Actions, Protocol: c.Protocol, SymLists: s.SymLists}
			if s.Handler != nil {
				if ps := s.Handler(c, p); ps != nil {
					if !writeAll(nc, ps) {
						return
					}
					continue
				}
			}
			if mp.WritePacket(nc, mp.RespOptNeg, rep.Append(nil)) != nil {
				return
			}
			continue
		case mp.CmdMacro:
			if m, err := mp.ParseMacro(p.Data); err == nil {
				for i := 0; i+1 < len(m.Pairs); i += 2 {
					c.Macros[m.Pairs[i]] = m.Pairs[i+1]
				}
			}
		case mp.CmdHeader:
			if h, err := mp.ParseHeader(p.Code, p.Data); err == nil {
				c.Headers = append(c.Headers, [2]string{h.Name, h.Value})
			}
		case mp.CmdBody:
			c.Body = append(c.Body, p.Data...)
		case mp.CmdAbort, mp.CmdEOB:
		case mp.CmdQuit:
			c.Log = append(c.Log, "Q")
			return
		}
		c.Log = append(c.Log, string(p.Code))
		var reply []mp.Packet
		if s.Handler != nil {
			reply = s.Handler(c, p)
		}
		if reply == nil {
			if p.Code == mp.CmdEOB || c.Protocol.Replies(p.Code) {
				reply = []mp.Packet{{Code: mp.RespContinue}}
			}
		}
		if p.Code == mp.CmdEOB || p.Code == mp.CmdAbort {
			c.Headers, c.Body = nil, nil
		}
		if !writeAll(nc, reply) {
			return
		}
	}
}

func writeAll(nc net.Conn, ps []mp.Packet) bool {
	var out []byte
	for _, p := range ps {
		if p.Code == 0 {
			return false
		}
		out = mp.AppendPacket(out, p.Code, p.Data)
	}
	if len(out) == 0 {
		return true
	}
	_, err := nc.Write(out)
	return err == nil
}

// Reply builds a reply packet.
func Reply(code byte, data ...[]byte) mp.Packet {
	var d []byte
	for _, x := range data {
		d = append(d, x...)
	}
	return mp.Packet{Code: code, Data: d}
}

// Str encodes NUL-terminated strings.
func Str(ss ...string) []byte { return mp.AppendStrings(nil, ss...) }
