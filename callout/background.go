// background.go: completion of probes in the background, as mailfromd's
// callout server does: addresses that were never run, or whose probe ended
// on a network error or timeout, are probed again after the client has
// gone, with the hard timeouts, so that the sender's retry finds the
// answer in the cache. A bounded queue (BgQueue, default 1000) feeds
// BgWorkers goroutines (default 4), started on first use; Close stops them.

package callout

import (
	"context"
	"sync"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

type background struct {
	once   sync.Once
	mu     sync.Mutex
	closed bool
	queue  chan smtpprobe.Request
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Enqueue queues a request for background completion with the hard
// timeouts. It returns false when the queue is full or the Verifier is
// closed.
func (v *Verifier) Enqueue(req smtpprobe.Request) bool {
	v.init()
	b := &v.bg
	b.once.Do(func() {
		n := v.BgQueue
		if n <= 0 {
			n = DefaultBgQueue
		}
		w := v.BgWorkers
		if w <= 0 {
			w = DefaultBgWorkers
		}
		b.queue = make(chan smtpprobe.Request, n)
		b.ctx, b.cancel = context.WithCancel(context.Background())
		for i := 0; i < w; i++ {
			b.wg.Add(1)
			go v.bgWorker()
		}
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	select {
	case b.queue <- req:
		v.c.bgQueued.Add(1)
		return true
	default:
		v.c.bgDropped.Add(1)
		return false
	}
}

func (v *Verifier) bgWorker() {
	b := &v.bg
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case req, ok := <-b.queue:
			if !ok {
				return
			}
			req.Timeouts = v.cur().HardTimeouts.Or(smtpprobe.HardTimeouts())
			out, _ := v.verify(b.ctx, req, nil, true)
			v.c.bgDone.Add(1)
			v.log().Info("background callout", "sid", req.Tag, "email", req.Email, "result", out.Result.String(), "host", out.Host)
		}
	}
}

// Close stops background completion (queued addresses are dropped,
// running probes cancelled) and waits for the workers.
func (v *Verifier) Close() error {
	b := &v.bg
	b.once.Do(func() {}) // no workers start after Close
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
		b.wg.Wait()
	}
	return nil
}
