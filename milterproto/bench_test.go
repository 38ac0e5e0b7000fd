package milterproto

import (
	"bytes"
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
