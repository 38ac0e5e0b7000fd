// leaks.go: NoLeaks, the goroutine-leak check of the front and engine tests.

package pmulttest

import (
	"runtime"
	"testing"
	"time"
)

// NoLeaks fails t if goroutines started during it are still running once
// it is over (after the cleanups registered after this call): a
// connection, an engine session or a backend left behind. It counts
// goroutines, so it must not be used in parallel tests.
func NoLeaks(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}
