// pprof.go: the opt-in runtime profiles (metrics_pprof = true) on the
// metrics listener's own mux. (Importing net/http/pprof also registers
// its handlers on http.DefaultServeMux, which pmult never serves.)

package service

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandlers registers net/http/pprof's handlers under /debug/pprof/
// on mux: the index and named profiles (heap, goroutine, allocs, block,
// mutex, threadcreate), the CPU profile (?seconds=N), the execution trace,
// the command line and symbol lookup.
func pprofHandlers(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
