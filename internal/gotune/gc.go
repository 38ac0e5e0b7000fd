// gc.go: the garbage collector's target.

package gotune

import (
	"os"
	"runtime/debug"
)

// GCPercent is pmult's garbage collector target unless GOGC is set: the
// live heap is small (tens of KiB per session), so collecting less often
// costs little memory and removes most collector pauses from the tail
// latency of milter replies (measured with make bench).
const GCPercent = 400

// SetGC sets the collector's target to GCPercent unless GOGC is set.
func SetGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
