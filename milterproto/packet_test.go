package milterproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// frame builds a raw packet with an explicit length word, so tests can
// write lengths that disagree with the bytes that follow.
func frame(length uint32, rest ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, length), rest...)
}

func TestReadPacket(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), MaxChunk)
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    []Packet // packets expected before the error
		wantErr error    // checked with errors.Is
	}{
		{name: "empty stream", in: nil, wantErr: io.EOF},
		{name: "one code-only packet then EOF", in: frame(1, 'N'), want: []Packet{{Code: 'N'}}, wantErr: io.EOF},
		{name: "packet with data", in: frame(5, 'H', 'a', 'b', 'c', 0), want: []Packet{{Code: 'H', Data: []byte("abc\x00")}}, wantErr: io.EOF},
		{name: "two packets", in: append(frame(1, 'A'), frame(2, 'D', 'C')...),
			want: []Packet{{Code: 'A'}, {Code: 'D', Data: []byte("C")}}, wantErr: io.EOF},
		{name: "header truncated 1 byte", in: []byte{0}, wantErr: io.ErrUnexpectedEOF},
		{name: "header truncated 3 bytes", in: []byte{0, 0, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "length word without code", in: frame(1), wantErr: io.ErrUnexpectedEOF},
		{name: "zero length word at the end", in: []byte{0, 0, 0, 0}, wantErr: ErrZeroLength},
		{name: "body truncated", in: frame(10, 'B', 'a', 'b'), wantErr: io.ErrUnexpectedEOF},
		{name: "body truncated after good packet", in: append(frame(1, 'T'), frame(3, 'B', 'a')...),
			want: []Packet{{Code: 'T'}}, wantErr: io.ErrUnexpectedEOF},
		{name: "zero length", in: frame(0, 'X'), wantErr: ErrZeroLength},
		{name: "over limit", in: frame(11, 'B'), max: 9, wantErr: ErrTooLarge},
		{name: "exactly at limit", in: frame(10, 'B', 1, 2, 3, 4, 5, 6, 7, 8, 9), max: 9,
			want: []Packet{{Code: 'B', Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}}}, wantErr: io.EOF},
		{name: "length 0xffffffff", in: frame(0xffffffff, 'B'), wantErr: ErrTooLarge},
		{name: "over default limit", in: frame(DefaultMaxData+2, 'B'), max: 0, wantErr: ErrTooLarge},
		{name: "body chunk of 65535 bytes at MDS64K", in: append(frame(MaxChunk+1, 'B'), chunk...), max: MDS64K,
			want: []Packet{{Code: 'B', Data: chunk}}, wantErr: io.EOF},
		{name: "body chunk of 65535 bytes at default limit", in: append(frame(MaxChunk+1, 'B'), chunk...),
			want: []Packet{{Code: 'B', Data: chunk}}, wantErr: io.EOF},
		{name: "65536 bytes at MDS64K", in: frame(MaxChunk+2, 'B'), max: MDS64K, wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tt.name
			if oneByte {
				name += "/one byte reads"
			}
			t.Run(name, func(t *testing.T) {
				var src io.Reader = bytes.NewReader(tt.in)
				if oneByte {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src, tt.max)
				var got []Packet
				var err error
				for {
					var p Packet
					p, err = r.ReadPacket()
					if err != nil {
						break
					}
					got = append(got, p)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr == io.EOF && err != io.EOF {
					t.Fatalf("clean end must be io.EOF itself, got %#v", err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %d packets, want %d", len(got), len(tt.want))
				}
				for i := range got {
					if got[i].Code != tt.want[i].Code || !bytes.Equal(got[i].Data, tt.want[i].Data) {
						t.Errorf("packet %d = %q %q, want %q %q", i, got[i].Code, got[i].Data, tt.want[i].Code, tt.want[i].Data)
					}
				}
			})
		}
	}
}

func TestReadPacketTooLargeMessage(t *testing.T) {
	_, err := NewReader(bytes.NewReader(frame(101, 'B')), 99).ReadPacket()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "100 bytes") || !strings.Contains(err.Error(), "limit 99") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadPacketSetMaxData(t *testing.T) {
	in := append(frame(5, 'B', 1, 2, 3, 4), frame(5, 'B', 1, 2, 3, 4)...)
	r := NewReader(bytes.NewReader(in), 3)
	if _, err := r.ReadPacket(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit 3: err = %v", err)
	}
	r = NewReader(bytes.NewReader(in), 3)
	r.SetMaxData(0) // ignored
	r.SetMaxData(-1)
	if _, err := r.ReadPacket(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("SetMaxData(<=0) must be ignored: err = %v", err)
	}
	r = NewReader(bytes.NewReader(in), 3)
	r.SetMaxData(4)
	for i := 0; i < 2; i++ {
		if p, err := r.ReadPacket(); err != nil || len(p.Data) != 4 {
			t.Fatalf("packet %d: %v %v", i, p, err)
		}
	}
}

// The Data of each packet must be a fresh allocation, not a view into a
// buffer the reader reuses.
func TestReadPacketDataOwned(t *testing.T) {
	in := append(frame(3, 'B', 'a', 'b'), frame(3, 'B', 'c', 'd')...)
	r := NewReader(bytes.NewReader(in), 0)
	p1, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	if string(p1.Data) != "ab" || string(p2.Data) != "cd" {
		t.Fatalf("p1 %q p2 %q", p1.Data, p2.Data)
	}
}

// A read error other than EOF is returned unchanged.
func TestReadPacketReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, in := range [][]byte{nil, {0, 0}, frame(3), frame(3, 'B')} {
		r := NewReader(io.MultiReader(bytes.NewReader(in), iotest.ErrReader(boom)), 0)
		if _, err := r.ReadPacket(); err != boom {
			t.Errorf("input %x: err = %v, want boom", in, err)
		}
	}
}

func TestAppendPacket(t *testing.T) {
	tests := []struct {
		name string
		code byte
		data [][]byte
		want []byte
	}{
		{"no data", 'c', nil, []byte{0, 0, 0, 1, 'c'}},
		{"empty part", 'c', [][]byte{{}}, []byte{0, 0, 0, 1, 'c'}},
		{"one part", 'y', [][]byte{[]byte("550 x\x00")}, []byte("\x00\x00\x00\x07y550 x\x00")},
		{"parts concatenated", 'h', [][]byte{[]byte("X-A\x00"), nil, []byte("v\x00")},
			[]byte("\x00\x00\x00\x07hX-A\x00v\x00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("pre")
			got := AppendPacket(append([]byte(nil), prefix...), tt.code, tt.data...)
			if !bytes.Equal(got, append(prefix, tt.want...)) {
				t.Fatalf("AppendPacket = %q, want %q", got, append(prefix, tt.want...))
			}
			var buf bytes.Buffer
			if err := WritePacket(&buf, tt.code, tt.data...); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), tt.want) {
				t.Fatalf("WritePacket = %q, want %q", buf.Bytes(), tt.want)
			}
		})
	}
}

type countingWriter struct {
	calls int
	buf   bytes.Buffer
	err   error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.err != nil {
		return 0, w.err
	}
	return w.buf.Write(p)
}

func TestWritePacketSingleWriteAndRoundTrip(t *testing.T) {
	chunk := bytes.Repeat([]byte{0, '\r', '\n', 0xff}, MaxChunk/4)
	pkts := []Packet{
		{Code: CmdOptNeg, Data: OptNeg{Version: 6, Actions: ActAllMask, Protocol: ProtoAllMask}.Append(nil)},
		{Code: CmdMacro, Data: []byte("C")},
		{Code: CmdBody, Data: chunk},
		{Code: CmdEOB},
		{Code: CmdQuit},
	}
	w := &countingWriter{}
	for _, p := range pkts {
		if err := WritePacket(w, p.Code, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	if w.calls != len(pkts) {
		t.Fatalf("%d Write calls for %d packets", w.calls, len(pkts))
	}
	r := NewReader(bytes.NewReader(w.buf.Bytes()), MDS64K)
	for i, want := range pkts {
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Code != want.Code || !bytes.Equal(p.Data, want.Data) {
			t.Fatalf("packet %d: got %q/%d bytes, want %q/%d bytes", i, p.Code, len(p.Data), want.Code, len(want.Data))
		}
	}
	if _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("after last packet: %v", err)
	}
	frames, err := ParseFrames(w.buf.Bytes(), MDS64K)
	if err != nil || len(frames) != len(pkts) {
		t.Fatalf("ParseFrames: %d frames, %v", len(frames), err)
	}

	w.err = errors.New("broken pipe")
	if err := WritePacket(w, 'c'); err != w.err {
		t.Fatalf("WritePacket error = %v", err)
	}
}

func TestParseFrames(t *testing.T) {
	two := append(frame(1, 'A'), frame(3, 'H', 'x', 0)...)
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    []Packet
		wantErr error
	}{
		{name: "empty", in: nil},
		{name: "two packets", in: two, max: 10, want: []Packet{{Code: 'A', Data: []byte{}}, {Code: 'H', Data: []byte("x\x00")}}},
		{name: "short header", in: []byte{0, 0, 0, 1}, max: 10, wantErr: io.ErrUnexpectedEOF},
		{name: "short header after packet", in: append(frame(1, 'A'), 0, 0), max: 10,
			want: []Packet{{Code: 'A', Data: []byte{}}}, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated body", in: frame(4, 'B', 1, 2), max: 10, wantErr: io.ErrUnexpectedEOF},
		{name: "zero length", in: frame(0, 'B'), max: 10, wantErr: ErrZeroLength},
		{name: "too large", in: frame(12, 'B'), max: 10, wantErr: ErrTooLarge},
		{name: "huge length", in: frame(0xffffffff, 'B'), max: 10, wantErr: ErrTooLarge},
		{name: "at limit", in: frame(3, 'B', 1, 2), max: 2, want: []Packet{{Code: 'B', Data: []byte{1, 2}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrames(tt.in, tt.max)
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d packets, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].Code != tt.want[i].Code || !bytes.Equal(got[i].Data, tt.want[i].Data) {
					t.Errorf("packet %d = %q %q", i, got[i].Code, got[i].Data)
				}
			}
		})
	}
}

// Appending to the Data of one frame must not overwrite the next frame in
// the input buffer.
func TestParseFramesDataCapacity(t *testing.T) {
	in := append(frame(2, 'B', 'a'), frame(2, 'B', 'b')...)
	frames, err := ParseFrames(in, 10)
	if err != nil || len(frames) != 2 {
		t.Fatal(frames, err)
	}
	_ = append(frames[0].Data, 'Z', 'Z', 'Z', 'Z')
	if string(frames[1].Data) != "b" || in[5] != 'a' || in[6] != 0 {
		t.Fatalf("append to frame 0 clobbered the input: %q, frame 1 = %q", in, frames[1].Data)
	}
}

// TestReaderPeek: Peek notices data, a deadline and the end of the stream
// without consuming anything, and the stream stays usable after a timeout.
func TestReaderPeek(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	r := NewReader(b, 0)

	b.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	var ne net.Error
	if err := r.Peek(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Peek with nothing sent: %v, want a timeout", err)
	}
	b.SetReadDeadline(time.Time{})

	go func() {
		WritePacket(a, CmdHelo, []byte("h\x00"))
		a.Close()
	}()
	if err := r.Peek(); err != nil {
		t.Fatalf("Peek: %v", err)
	}
	p, err := r.ReadPacket()
	if err != nil || p.Code != CmdHelo || string(p.Data) != "h\x00" {
		t.Fatalf("ReadPacket after Peek: %q %q %v", p.Code, p.Data, err)
	}
	if err := r.Peek(); err != io.EOF {
		t.Fatalf("Peek after close: %v, want io.EOF", err)
	}
}

// After Reuse, packets up to maxReused bytes share the Reader's buffer
// (capped at their end: an append cannot reach the next packet's bytes);
// a bigger one gets its own.
func TestReaderReuse(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxReused+1)
	var stream []byte
	stream = AppendPacket(stream, CmdHeader, []byte("Subject\x00hi\x00"))
	stream = AppendPacket(stream, CmdBody, []byte("body\r\n"))
	stream = AppendPacket(stream, CmdBody, big)
	r := NewReader(bytes.NewReader(stream), 1<<20)
	r.Reuse()
	p1, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	first := &p1.Data[0]
	if string(p1.Data) != "Subject\x00hi\x00" || cap(p1.Data) != len(p1.Data) {
		t.Fatalf("first packet %q cap %d", p1.Data, cap(p1.Data))
	}
	p2, err := r.ReadPacket()
	if err != nil || string(p2.Data) != "body\r\n" || &p2.Data[0] != first {
		t.Fatalf("second packet %q %v: not in the reused buffer", p2.Data, err)
	}
	p3, err := r.ReadPacket()
	if err != nil || !bytes.Equal(p3.Data, big) || &p3.Data[0] == first {
		t.Fatalf("big packet: %d bytes %v, in the reused buffer %v", len(p3.Data), err, &p3.Data[0] == first)
	}
}

// Ready is true exactly when a whole packet is buffered.
func TestReaderReady(t *testing.T) {
	var stream []byte
	stream = AppendPacket(stream, CmdHeader, []byte("Subject\x00hi\x00"))
	stream = AppendPacket(stream, CmdEOH)
	for _, tc := range []struct {
		name  string
		cut   int // bytes of the second packet in the stream
		ready bool
	}{{"whole", 5, true}, {"length only", 4, false}, {"partial length", 2, false}, {"nothing", 0, false}} {
		first := len(stream) - 5
		r := NewReader(bytes.NewReader(stream[:first+tc.cut]), 1<<20)
		if r.Ready() {
			t.Fatalf("%s: ready before any read", tc.name)
		}
		if _, err := r.ReadPacket(); err != nil { // buffers what the reader has
			t.Fatal(err)
		}
		if got := r.Ready(); got != tc.ready {
			t.Errorf("%s: Ready %v with %d bytes buffered, want %v", tc.name, got, r.Buffered(), tc.ready)
		}
	}
}
