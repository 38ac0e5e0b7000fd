// Command gofloor is bench/floor/mfloor.c written in Go: the least a milter
// multiplexer in Go can do for make bench-postfix's workload, to measure
// what Go's runtime (goroutines, the netpoller, the scheduler) costs on
// its own. It is a measuring instrument, not a product: it handles what
// that benchmark sends and nothing more (see mfloor.c for the list), with
// the same system calls as mfloor where Go lets it, one goroutine per MTA
// connection, net.Conn for every socket (internal/unixconn for the
// milters' unix sockets, as pmult), no logging, no policy, no timeouts,
// and pmult's runtime settings (internal/gotune).
//
// usage: gofloor LISTEN REUSE BACKEND...
//
// LISTEN and BACKEND as Postfix spells milters (unix:/path or
// inet:PORT@127.0.0.1); REUSE is 0 or 1.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailmux/mailmux/internal/gotune"
	"github.com/mailmux/mailmux/internal/unixconn"
)

func main() {
	gotune.KeepSysmonAwake()
	gotune.SetGC()
	gotune.AdaptProcs(context.Background())
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gofloor LISTEN REUSE BACKEND...")
		os.Exit(2)
	}
	f := &floor{reuse: os.Args[2] == "1", backends: os.Args[3:]}
	network, addr := spec(os.Args[1])
	if network == "unix" {
		os.Remove(addr)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(1)
	}
	if network == "unix" {
		os.Chmod(addr, 0o666) // Postfix's smtpd connects as user postfix
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go f.serve(c)
	}
}

// dial connects to a milter as pmult does: a unix socket through
// internal/unixconn (not woken when the milter reads), TCP with net.Dial.
func dial(b string) (net.Conn, error) {
	network, addr := spec(b)
	if network == "unix" {
		return unixconn.Dial(context.Background(), addr, time.Time{})
	}
	return net.Dial(network, addr)
}

func spec(s string) (network, addr string) {
	if a, ok := strings.CutPrefix(s, "unix:"); ok {
		return "unix", a
	}
	a := strings.TrimPrefix(s, "inet:")
	port, host, _ := strings.Cut(a, "@")
	return "tcp", net.JoinHostPort(host, port)
}

// rd reads packets from a connection with one buffer, reading only when no
// whole packet is buffered.
type rd struct {
	c    net.Conn
	buf  []byte
	r, w int
}

func (x *rd) next() (cmd byte, data []byte, err error) {
	for {
		if have := x.w - x.r; have >= 5 {
			l := int(binary.BigEndian.Uint32(x.buf[x.r:]))
			if l == 0 || l > 64<<20 {
				return 0, nil, errors.New("bad length")
			}
			if have >= 4+l {
				p := x.buf[x.r : x.r+4+l]
				x.r += 4 + l
				return p[4], p[5:], nil
			}
			if 4+l > len(x.buf) {
				nb := make([]byte, 4+l+65536)
				x.w = copy(nb, x.buf[x.r:x.w])
				x.r, x.buf = 0, nb
			}
		}
		if x.r == x.w {
			x.r, x.w = 0, 0
		} else if len(x.buf)-x.w < 65536 && x.r > 0 {
			x.w = copy(x.buf, x.buf[x.r:x.w])
			x.r = 0
		}
		if x.buf == nil {
			x.buf = make([]byte, 65536)
		}
		n, err := x.c.Read(x.buf[x.w:])
		if n <= 0 {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		x.w += n
	}
}

func pkt(dst []byte, cmd byte, data []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)+1))
	dst = append(dst, cmd)
	return append(dst, data...)
}

// set is one connection to each backend.
type set struct{ r []*rd }

type floor struct {
	reuse    bool
	backends []string
	mu       sync.Mutex
	pool     []*set
}

func (f *floor) open() (*set, error) {
	f.mu.Lock()
	if n := len(f.pool); n > 0 {
		s := f.pool[n-1]
		f.pool = f.pool[:n-1]
		f.mu.Unlock()
		return s, nil
	}
	f.mu.Unlock()
	s := &set{}
	// version 6, every action, every NO* and NR_* bit and SKIP offered,
	// as pmult and mfloor do
	offer := pkt(nil, 'O', binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 6), 0x1ff), 0xff7ff))
	for _, b := range f.backends {
		c, err := dial(b)
		if err != nil {
			s.close()
			return nil, err
		}
		s.r = append(s.r, &rd{c: c})
		if _, err := c.Write(offer); err != nil {
			s.close()
			return nil, err
		}
	}
	for i, x := range s.r {
		cmd, data, err := x.next()
		if err != nil || cmd != 'O' || len(data) < 12 {
			s.close()
			return nil, fmt.Errorf("%s: no OPTNEG reply (%v)", f.backends[i], err)
		}
		if p := binary.BigEndian.Uint32(data[8:]); p&0xff3ff != 0 {
			s.close()
			return nil, fmt.Errorf("%s asks for protocol 0x%x: steps skipped or not answered are not handled", f.backends[i], p)
		}
	}
	return s, nil
}

func (s *set) close() {
	for _, x := range s.r {
		x.c.Close()
	}
}

func (f *floor) release(s *set) {
	code := byte('Q')
	if f.reuse {
		code = 'K'
	}
	p := pkt(nil, code, nil)
	for _, x := range s.r {
		x.c.Write(p)
	}
	if !f.reuse {
		s.close()
		return
	}
	f.mu.Lock()
	f.pool = append(f.pool, s)
	f.mu.Unlock()
}

func final(c byte) bool {
	switch c {
	case 'c', 'a', 'r', 't', 'y', 'd':
		return true
	}
	return false
}

func (f *floor) serve(c net.Conn) {
	defer c.Close()
	m := &rd{c: c}
	var s *set
	defer func() {
		if s != nil {
			f.release(s)
		}
	}()
	var pend, hdrs, rest, w, mods, added, reply []byte
	inbody, inmsg := false, false
	nhdr, nrest := 0, 0
	for {
		cmd, data, err := m.next()
		if err != nil {
			return
		}
		switch cmd {
		case 'O':
			if len(data) < 12 {
				return
			}
			prot := binary.BigEndian.Uint32(data[8:]) & (0x80 | 0x40000 | 0x80000) // NR_HDR, NR_EOH, NR_BODY
			r := binary.BigEndian.AppendUint32(nil, 6)
			r = binary.BigEndian.AppendUint32(r, binary.BigEndian.Uint32(data[4:])&0x1ff)
			r = binary.BigEndian.AppendUint32(r, prot)
			if _, err := c.Write(pkt(w[:0], 'O', r)); err != nil {
				return
			}
		case 'D':
			if len(data) > 0 && strings.IndexByte("LNBE", data[0]) >= 0 {
				if data[0] == 'L' && !inbody {
					hdrs = pkt(hdrs, 'D', data)
				} else {
					inbody = true
					rest = pkt(rest, 'D', data)
				}
			} else {
				pend = pkt(pend, 'D', data)
			}
		case 'C', 'H', 'M', 'R', 'T', 'U':
			if s == nil {
				if s, err = f.open(); err != nil {
					fmt.Fprintln(os.Stderr, "gofloor:", err)
					return
				}
			}
			if cmd == 'M' {
				inmsg = true
			}
			pend = pkt(pend, cmd, data)
			for _, x := range s.r {
				if _, err := x.c.Write(pend); err != nil {
					return
				}
			}
			pend = pend[:0]
			reply = pkt(reply[:0], 'c', nil)
			worse := false
			for _, x := range s.r {
				var rc byte
				var rdata []byte
				for rc == 0 || rc == 'p' {
					if rc, rdata, err = x.next(); err != nil {
						return
					}
				}
				if !worse && rc != 'c' && rc != 'a' {
					reply = pkt(reply[:0], rc, rdata)
					worse = true
				}
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		case 'L':
			if inbody {
				rest = pkt(rest, cmd, data)
				nrest++
			} else {
				hdrs = pkt(hdrs, cmd, data)
				nhdr++
			}
		case 'N', 'B':
			inbody = true
			rest = pkt(rest, cmd, data)
			nrest++
		case 'E':
			if s == nil {
				return
			}
			mods, added = mods[:0], added[:0]
			nadded := 0
			reply = pkt(reply[:0], 'c', nil)
			worse := false
			for _, x := range s.r {
				w = append(append(append(append(w[:0], pend...), hdrs...), added...), rest...)
				w = pkt(w, 'E', data) // data stays valid: m is not read meanwhile
				if _, err := x.c.Write(w); err != nil {
					return
				}
				want := nhdr + nadded + nrest
				for {
					rc, rdata, err := x.next()
					if err != nil {
						return
					}
					if want > 0 && rc == 'c' {
						want--
						continue
					}
					if rc == 'p' {
						continue
					}
					if final(rc) {
						if !worse && rc != 'c' && rc != 'a' {
							reply = pkt(reply[:0], rc, rdata)
							worse = true
						}
						break
					}
					// an edit: to the MTA, and an added header to the later backends
					mods = pkt(mods, rc, rdata)
					if rc == 'h' {
						added = pkt(added, 'L', rdata)
						nadded++
					}
				}
			}
			pend, hdrs, rest = pend[:0], hdrs[:0], rest[:0]
			nhdr, nrest = 0, 0
			inbody, inmsg = false, false
			if _, err := c.Write(append(mods, reply...)); err != nil {
				return
			}
		case 'A':
			// ABORT outside a message: left out, as pmult and mfloor do
			// (libmilter would then ignore QUIT_NC)
			if s != nil && inmsg {
				pend = pkt(pend, 'A', nil)
				for _, x := range s.r {
					x.c.Write(pend)
				}
			}
			pend, hdrs, rest = pend[:0], hdrs[:0], rest[:0]
			nhdr, nrest = 0, 0
			inbody, inmsg = false, false
		case 'Q':
			return
		default:
			fmt.Fprintf(os.Stderr, "gofloor: command %c not handled\n", cmd)
			return
		}
	}
}
