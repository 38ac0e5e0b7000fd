package milterproto

import (
	"bytes"
	"io"
	"testing"
)

// gate is a stream that says when a read finds nothing buffered.
type gate struct {
	data    *bytes.Reader
	waiting chan struct{}
}

func (g *gate) Read(p []byte) (int, error) {
	if g.data.Len() == 0 {
		close(g.waiting)
		return 0, io.EOF
	}
	return g.data.Read(p)
}

// A Reader on a pool holds a buffer while a packet is read or processed
// and gives it back once it must wait for the stream with nothing
// buffered, or on Release: an idle connection pins no packet buffer.
func TestReaderReuseFromReleasesWhenIdle(t *testing.T) {
	var pool BufPool
	var in []byte
	in = AppendPacket(in, CmdHelo, []byte("a.example\x00"))
	in = AppendPacket(in, CmdMail, []byte("<a@example.org>\x00"))
	g := &gate{data: bytes.NewReader(in), waiting: make(chan struct{})}
	r := NewReader(g, 0)
	r.ReuseFrom(&pool)
	p, err := r.ReadPacket()
	if err != nil || p.Code != CmdHelo {
		t.Fatalf("first packet %c, %v", p.Code, err)
	}
	if pool.InUse() != 1 {
		t.Fatalf("after a packet: %d buffers in use, want 1", pool.InUse())
	}
	if p, err = r.ReadPacket(); err != nil || p.Code != CmdMail || string(p.Data) != "<a@example.org>\x00" {
		t.Fatalf("second packet %c %q, %v", p.Code, p.Data, err)
	}
	if _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
	<-g.waiting
	if pool.InUse() != 0 {
		t.Errorf("waiting for the stream: %d buffers in use, want 0", pool.InUse())
	}

	g = &gate{data: bytes.NewReader(AppendPacket(nil, CmdHelo, []byte("b\x00"))), waiting: make(chan struct{})}
	r = NewReader(g, 0)
	r.ReuseFrom(&pool)
	if _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	r.Release()
	r.Release()
	if pool.InUse() != 0 {
		t.Errorf("after Release: %d buffers in use, want 0", pool.InUse())
	}
}

// Get hands out buffers of at least the capacity asked for, and Put
// drops buffers too big to keep.
func TestBufPool(t *testing.T) {
	var pool BufPool
	b := pool.Get(100)
	if cap(*b) < 100 || len(*b) != 0 {
		t.Fatalf("Get(100): len %d cap %d", len(*b), cap(*b))
	}
	*b = append(*b, "x"...)
	pool.Put(b)
	if b = pool.Get(2000); cap(*b) < 2000 || len(*b) != 0 {
		t.Fatalf("Get(2000): len %d cap %d", len(*b), cap(*b))
	}
	*b = make([]byte, 0, MaxPooled+1)
	pool.Put(b)
	pool.Put(nil)
	if pool.InUse() != 0 {
		t.Errorf("%d in use, want 0", pool.InUse())
	}
}
