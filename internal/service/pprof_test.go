package service

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// TestMetricsPprof: the metrics listener serves /debug/pprof/ only when
// metrics_pprof is on; /why is there either way.
func TestMetricsPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		mux := metricsMux(on, pmult.NewMetrics(), nil, nil, pmult.NewRecorder(4), &listenerCounts{})
		ts := httptest.NewServer(mux)
		get := func(path string) (int, string) {
			resp, err := http.Get(ts.URL + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"} {
			code, body := get(path)
			if on && code != http.StatusOK {
				t.Errorf("pprof on: GET %s = %d, want 200", path, code)
			}
			if !on && code != http.StatusNotFound {
				t.Errorf("pprof off: GET %s = %d, want 404", path, code)
			}
			if on && path == "/debug/pprof/goroutine?debug=1" && !strings.Contains(body, "goroutine profile:") {
				t.Errorf("pprof on: goroutine profile body %.100q", body)
			}
		}
		if code, _ := get("/why"); code != http.StatusBadRequest {
			t.Errorf("pprof %v: GET /why = %d, want 400 (the rest of the mux is unchanged)", on, code)
		}
		ts.Close()
	}
}
