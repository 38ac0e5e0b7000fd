// pool.go: connections kept for reuse between MTA sessions (Config.Reuse,
// QUIT_NC), and their retirement at reload.

package milter

import (
	"errors"
	"net"
	"syscall"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// reuse returns an idle connection negotiated for the same offer, or nil.
func (b *Backend) reuse(o pmult.Offer) *session {
	if !b.cfg.Reuse {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.idle) - 1; i >= 0; i-- {
		s := b.idle[i]
		if s.offer != o {
			continue
		}
		b.idle = append(b.idle[:i], b.idle[i+1:]...)
		if time.Since(s.idleAt) > b.cfg.IdleTimeout || !s.alive() {
			s.conn.Close()
			continue
		}
		return s
	}
	return nil
}

// alive checks, without blocking, that the filter has not closed an idle
// connection (it must have sent nothing).
func (s *session) alive() bool {
	if s.r.Buffered() > 0 {
		return false
	}
	if sc, ok := s.conn.(syscall.Conn); ok {
		// One peek that does not wait: nothing to read (EAGAIN) is
		// alive; end of stream (0) or bytes the filter should not have
		// sent are not. No deadlines to set and clear.
		// Control, not Read: Read would refuse once the last read's
		// deadline has passed, as it has on a connection idle for
		// longer than read_timeout.
		if rc, err := sc.SyscallConn(); err == nil {
			if s.peekFn == nil {
				s.peekFn = s.peek // bound once: no closure per reuse
			}
			if err := rc.Control(s.peekFn); err != nil {
				return false
			}
			return errors.Is(s.peekErr, syscall.EAGAIN)
		}
	}
	s.conn.SetReadDeadline(time.Now())
	var b [1]byte
	_, err := s.conn.Read(b[:])
	s.conn.SetReadDeadline(time.Time{})
	s.rdl.Forget()
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// peek is alive's look at the socket (Control's callback): peekErr is
// EAGAIN when nothing waits to be read.
func (s *session) peek(fd uintptr) {
	var b [1]byte
	_, _, s.peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
}

// keepable reports whether an ended session can be kept for reuse: clean,
// nothing in flight, after an answered end of message.
func (b *Backend) keepable(s *session) bool {
	return b.cfg.Reuse && !s.broken && !s.inMsg && s.version >= 6 && s.endOK && !s.skew && len(s.expect) == 0 && !b.noQuitNC.Load()
}

// quitNC is the SMFIC_QUIT_NC packet (never written to).
var quitNC = mp.AppendPacket(nil, mp.CmdQuitNC)

// release keeps an ended session for reuse if it can be; it reports
// whether it did.
func (b *Backend) release(s *session) bool {
	if !b.keepable(s) {
		return false
	}
	b.mu.Lock()
	retired := b.retired
	b.mu.Unlock()
	if retired {
		return false
	}
	if s.stopFired {
		// Its context ended first: the stop may still be about to set
		// past deadlines, behind any set here.
		return false
	}
	// The write deadline as for any write (usually the one set already:
	// no timer to move), left in place while the connection is idle:
	// the next write moves it when it must.
	now := time.Now()
	s.writeDeadline(now)
	if _, err := s.conn.Write(quitNC); err != nil {
		return false
	}
	s.quarantine = nil
	s.idleAt = now
	// Between SMTP sessions the connection pins no buffer (nothing is
	// in flight: the EOM was answered and no answer is owed).
	s.r.Release()
	s.dropBuf(s.wbuf)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.retired { // retired while QUIT_NC was being written
		go s.conn.Close()
		return true
	}
	if len(b.idle) >= b.cfg.MaxIdle {
		old := b.idle[0]
		b.idle = b.idle[1:]
		go old.conn.Close()
	}
	b.idle = append(b.idle, s)
	return true
}

// Retire implements pmult.Retirer: it closes every idle connection kept
// for reuse, and sessions that end later close theirs instead of keeping
// them (a reload replaced the engine this backend belongs to; nothing
// would ever reuse them).
func (b *Backend) Retire() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.retired = true
	b.mu.Unlock()
	for _, s := range idle {
		s.conn.Write(mp.AppendPacket(nil, mp.CmdQuit))
		s.conn.Close()
	}
}
