package milterproto

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// BenchmarkReadPacket reads a Postfix-like session (16 packets) plus one
// full 65535-byte body chunk per iteration.
func BenchmarkReadPacket(b *testing.B) { benchReadPacket(b, false) }

// BenchmarkReadPacketReuse is BenchmarkReadPacket with Reader.Reuse.
func BenchmarkReadPacketReuse(b *testing.B) { benchReadPacket(b, true) }

// BenchmarkReadPacketSmall reads the session's 16 packets only (Reuse),
// buffered in one read: the per-packet cost without a body to copy.
func BenchmarkReadPacketSmall(b *testing.B) {
	stream := seedStream()
	br := bytes.NewReader(stream)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	r := NewReader(br, MDS64K)
	r.Reuse()
	for b.Loop() {
		br.Reset(stream)
		for {
			if _, err := r.ReadPacket(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

// onePerRead returns one packet of stream per Read, as a socket does
// when its peer writes a packet and waits for the answer.
type onePerRead struct{ rest []byte }

func (o *onePerRead) Read(p []byte) (int, error) {
	if len(o.rest) == 0 {
		return 0, io.EOF
	}
	n := 4 + int(binary.BigEndian.Uint32(o.rest))
	n = copy(p, o.rest[:min(n, len(p))])
	o.rest = o.rest[n:]
	return n, nil
}

// BenchmarkReadPacketOnePerRead: small packets, each in its own Read
// (the buffer empty before every packet).
func BenchmarkReadPacketOnePerRead(b *testing.B) {
	stream := seedStream()
	src := &onePerRead{}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	r := NewReader(src, MDS64K)
	r.Reuse()
	for b.Loop() {
		src.rest = stream
		for {
			if _, err := r.ReadPacket(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

func benchReadPacket(b *testing.B, reuse bool) {
	stream := seedStream()
	stream = AppendPacket(stream, CmdBody, bytes.Repeat([]byte("0123456789abcde\n"), MaxChunk/16+1)[:MaxChunk])
	br := bytes.NewReader(stream)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(stream)
		r := NewReader(br, MDS64K)
		if reuse {
			r.Reuse()
		}
		for {
			if _, err := r.ReadPacket(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

// BenchmarkParseMacro parses Postfix's default connect macro packet.
func BenchmarkParseMacro(b *testing.B) {
	b.SetBytes(int64(len(seedMacroC)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := ParseMacro(seedMacroC)
		if err != nil || len(m.Pairs) != 10 {
			b.Fatal(m, err)
		}
	}
}
