// packet.go: framing. A packet is u32 length (command byte included), the
// command byte, then length-1 bytes of data.

package milterproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet is one framed milter packet. Data excludes the command byte.
type Packet struct {
	Code byte
	Data []byte
}

// Errors returned by the framing layer.
var (
	// ErrZeroLength is returned for a packet whose length word is 0.
	ErrZeroLength = errors.New("milter: packet length 0")
	// ErrTooLarge is returned for a packet larger than the reader's limit.
	ErrTooLarge = errors.New("milter: packet too large")
)

// Reader reads packets from a stream. By default the Data of each packet
// it returns is freshly allocated and owned by the caller, so it may be
// shared (for example between several backends) without copying; after
// Reuse it is the Reader's and valid only until the next ReadPacket.
//
// The Reader buffers its input (one read system call usually brings a
// whole packet, or several), so it must be the only reader of r.
type Reader struct {
	r       *bufio.Reader
	maxData int
	hdr     [5]byte
	reuse   bool
	buf     []byte // the packet data buffer, after Reuse
	pool    *BufPool
	bufp    *[]byte // buf's pointer, from pool (ReuseFrom), nil while released
}

// maxReused is the largest packet data buffer a Reader keeps after Reuse
// (one body chunk of the default size); bigger packets get their own.
const maxReused = MDS64K

// Reuse makes the Reader return every packet's Data in one buffer of its
// own (up to maxReused bytes), overwritten by the next ReadPacket: no
// allocation per packet. The caller must copy whatever it keeps (parsed
// strings are copies already).
func (r *Reader) Reuse() { r.reuse = true }

// ReuseFrom is Reuse with the buffer taken from pool, and given back to
// it by Release and whenever ReadPacket is about to wait for a packet
// with nothing buffered (the last packet's Data is dead then): a Reader
// idle between packets pins no packet buffer.
func (r *Reader) ReuseFrom(pool *BufPool) { r.reuse, r.pool = true, pool }

// Release gives the packet buffer back to the ReuseFrom pool: the caller
// is done with the last packet's Data. The next packet takes one again.
func (r *Reader) Release() {
	if r.bufp != nil {
		*r.bufp = r.buf[:0]
		r.pool.Put(r.bufp)
		r.bufp, r.buf = nil, nil
	}
}

// readBufSize is the Reader's buffer: large enough for any envelope
// packet; body chunks bigger than it are read straight into their slice.
const readBufSize = 1024

// NewReader returns a Reader that refuses packets with more than maxData
// bytes of data (maxData <= 0 means DefaultMaxData).
func NewReader(r io.Reader, maxData int) *Reader {
	if maxData <= 0 {
		maxData = DefaultMaxData
	}
	return &Reader{r: bufio.NewReaderSize(r, readBufSize), maxData: maxData}
}

// Buffered returns the number of bytes already read from the stream and
// not yet returned as packets.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// Ready reports whether a whole packet is buffered, so that ReadPacket
// will not read from the stream (and no read deadline can matter).
func (r *Reader) Ready() bool {
	if r.r.Buffered() < 5 {
		return false
	}
	b, err := r.r.Peek(4)
	if err != nil {
		return false
	}
	return uint64(r.r.Buffered()) >= 4+uint64(binary.BigEndian.Uint32(b))
}

// Peek waits until at least one byte of the next packet is buffered and
// returns nil, or returns the stream's error (io.EOF when the peer closed
// it, a timeout after a read deadline). It consumes nothing: a packet read
// after Peek is whole. Use it to notice a closed stream while no packet is
// expected; like ReadPacket, it must not run concurrently with a read.
func (r *Reader) Peek() error {
	_, err := r.r.Peek(1)
	return err
}

// SetMaxData changes the data size limit (after MDS negotiation, say).
func (r *Reader) SetMaxData(n int) {
	if n > 0 {
		r.maxData = n
	}
}

// ReadPacket reads one packet. It returns io.EOF if the stream ends cleanly
// between packets, io.ErrUnexpectedEOF if it ends inside one, ErrZeroLength
// or an error wrapping ErrTooLarge for a bad length word.
func (r *Reader) ReadPacket() (Packet, error) {
	buffered := r.r.Buffered()
	if buffered == 0 && r.bufp != nil {
		r.Release() // about to wait: idle
	}
	if buffered < 5 {
		// One fill for the header (and whatever came with it), so that
		// a whole packet is taken by the path below.
		b, err := r.r.Peek(5)
		switch {
		case err == nil:
			buffered = r.r.Buffered()
		case len(b) < 4:
			if len(b) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Packet{}, err // io.EOF at a packet boundary
		}
		// A length word and no code: the path below tells a zero or
		// oversize length from a truncated packet.
	}
	if buffered >= 5 {
		// A whole packet already buffered (the usual case: one read
		// brings a burst) is taken straight from the buffer, without
		// three trips through io.ReadFull.
		b, _ := r.r.Peek(5)
		if n := binary.BigEndian.Uint32(b); n > 0 && uint64(n-1) <= uint64(r.maxData) && uint64(buffered) >= 4+uint64(n) {
			b, _ = r.r.Peek(int(4 + n))
			p := Packet{Code: b[4]}
			if n > 1 {
				p.Data = r.dataBuf(int(n - 1))
				copy(p.Data, b[5:])
			}
			r.r.Discard(int(4 + n))
			return p, nil
		}
	}
	if _, err := io.ReadFull(r.r, r.hdr[:4]); err != nil {
		return Packet{}, err // io.EOF at a packet boundary, or ErrUnexpectedEOF
	}
	n := binary.BigEndian.Uint32(r.hdr[:4])
	if n == 0 {
		return Packet{}, ErrZeroLength
	}
	if uint64(n-1) > uint64(r.maxData) {
		return Packet{}, fmt.Errorf("%w: %d bytes of data, limit %d", ErrTooLarge, n-1, r.maxData)
	}
	if _, err := io.ReadFull(r.r, r.hdr[4:5]); err != nil {
		return Packet{}, unexpected(err)
	}
	p := Packet{Code: r.hdr[4]}
	if n > 1 {
		p.Data = r.dataBuf(int(n - 1))
		if _, err := io.ReadFull(r.r, p.Data); err != nil {
			return Packet{}, unexpected(err)
		}
	}
	return p, nil
}

// dataBuf returns the slice for a packet's n bytes of data: the Reader's
// buffer after Reuse (n up to maxReused), otherwise a new one.
func (r *Reader) dataBuf(n int) []byte {
	if !r.reuse || n > maxReused {
		return make([]byte, n)
	}
	if r.pool != nil && cap(r.buf) < n {
		r.Release()
		r.bufp = r.pool.Get(n)
		r.buf = (*r.bufp)[:cap(*r.bufp)]
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, max(n, 512))
	}
	return r.buf[:n:n]
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendPacket appends the framed packet (code, data parts concatenated) to
// dst and returns the extended slice.
func AppendPacket(dst []byte, code byte, data ...[]byte) []byte {
	n := 1
	for _, d := range data {
		n += len(d)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, code)
	for _, d := range data {
		dst = append(dst, d...)
	}
	return dst
}

// StartPacket appends the header of a packet whose payload the caller will
// append directly; FinishPacket then fills in its length. Together they
// frame a payload without building it in a separate slice first:
//
//	dst, at := StartPacket(dst, CmdHelo)
//	dst = AppendStrings(dst, "client.example")
//	dst = FinishPacket(dst, at)
func StartPacket(dst []byte, code byte) ([]byte, int) {
	at := len(dst)
	return append(dst, 0, 0, 0, 0, code), at
}

// FinishPacket sets the length word of the packet started at at.
func FinishPacket(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// WritePacket writes one packet with a single Write call.
func WritePacket(w io.Writer, code byte, data ...[]byte) error {
	n := 5
	for _, d := range data {
		n += len(d)
	}
	buf := AppendPacket(make([]byte, 0, n), code, data...)
	_, err := w.Write(buf)
	return err
}

// ParseFrames splits a byte slice holding whole packets into packets. It is
// used by tests and the fuzzer; it never panics. The Data of each packet
// aliases b (its capacity ends with the packet).
func ParseFrames(b []byte, maxData int) ([]Packet, error) {
	var out []Packet
	for len(b) > 0 {
		if len(b) < 5 {
			return out, io.ErrUnexpectedEOF
		}
		n := binary.BigEndian.Uint32(b)
		if n == 0 {
			return out, ErrZeroLength
		}
		if uint64(n-1) > uint64(maxData) {
			return out, fmt.Errorf("%w: %d bytes of data, limit %d", ErrTooLarge, n-1, maxData)
		}
		if uint64(len(b)-4) < uint64(n) {
			return out, io.ErrUnexpectedEOF
		}
		// Cap Data at its end so that appending to one packet's Data
		// cannot overwrite the next packet in b.
		out = append(out, Packet{Code: b[4], Data: b[5 : 4+n : 4+n]})
		b = b[4+n:]
	}
	return out, nil
}
