// procmetrics.go: the process gauges of /metrics (goroutines, resident
// memory, open file descriptors), under the Prometheus client's usual
// names, for the soak test (make soak) and for operators.

package service

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
)

// writeProcessMetrics writes go_goroutines, go_sched_gomaxprocs_threads,
// process_resident_memory_bytes and process_open_fds (the last two from
// /proc, omitted where it is not readable).
func writeProcessMetrics(w io.Writer) {
	fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	// GOMAXPROCS now (internal/gotune.Procs moves it with the load); the
	// name client_golang's Go collector gives it.
	fmt.Fprintf(w, "# TYPE go_sched_gomaxprocs_threads gauge\ngo_sched_gomaxprocs_threads %d\n", runtime.GOMAXPROCS(0))
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
				f := bytes.Fields(rest)
				if len(f) > 0 {
					if kb, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil {
						fmt.Fprintf(w, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", kb*1024)
					}
				}
			}
		}
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fmt.Fprintf(w, "# TYPE process_open_fds gauge\nprocess_open_fds %d\n", len(ents)-1) // less the one reading it
	}
}
