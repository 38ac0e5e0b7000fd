// pool.go: packet buffers shared by the connections of one owner (a
// server, a backend), so that an idle connection pins none.

package milterproto

import (
	"sync"
	"sync/atomic"
)

// BufPool holds byte buffers for packet data and batched writes that
// connections give back while idle and take again when busy: memory then
// follows the connections at work, not the connections open. The zero
// value is ready; a BufPool must not be copied after first use.
type BufPool struct {
	p   sync.Pool
	out atomic.Int64 // buffers handed out by Get and not given back
}

// InUse is the number of buffers taken by Get and not given back by Put:
// those of the connections at work.
func (bp *BufPool) InUse() int { return int(bp.out.Load()) }

// MaxPooled is the largest buffer a BufPool keeps (one body chunk of the
// default size): bigger ones are left to the garbage collector.
const MaxPooled = MDS64K

// minPooled is the smallest buffer Get hands out: any envelope packet.
const minPooled = 512

// Get returns a buffer, empty, of capacity at least n (a new one if the
// pool has none large enough). The pointer is what Put takes back: keep
// it and store the grown slice in it, so that no allocation is made.
func (bp *BufPool) Get(n int) *[]byte {
	bp.out.Add(1)
	if v, ok := bp.p.Get().(*[]byte); ok {
		if cap(*v) >= n {
			*v = (*v)[:0]
			return v
		}
		bp.p.Put(v)
	}
	b := make([]byte, 0, max(n, minPooled))
	return &b
}

// Put gives *b back; the caller must not use it (or anything sliced from
// it) afterwards. Buffers larger than MaxPooled, or nil, are dropped.
func (bp *BufPool) Put(b *[]byte) {
	if b == nil {
		return
	}
	bp.out.Add(-1)
	if cap(*b) == 0 || cap(*b) > MaxPooled {
		return
	}
	*b = (*b)[:0]
	bp.p.Put(b)
}
