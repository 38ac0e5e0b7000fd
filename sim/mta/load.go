// load.go: load mode. N workers run sessions back to back against the
// filter (open and negotiate, EHLO, MAIL, RCPT…, DATA, headers, body, end
// of message, QUIT), for a number of sessions or a duration, and report
// sessions/s, messages/s, verdicts, and latency percentiles per stage.
//
// Tunables (LoadOptions) and defaults: Concurrency 1, Count 100 sessions
// when neither Count nor Duration is given, 1 message per session, 1
// recipient, a generated 2 KiB message unless a mail file is given.
// Latencies are kept in a log-linear histogram (64 sub-buckets per power
// of two: under 1.6% error), so memory does not grow with the run.

package mtasim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/pmult"
)

// LoadOptions configure RunLoad.
type LoadOptions struct {
	Concurrency int
	Count       int           // sessions in total (0 with Duration: unlimited)
	Duration    time.Duration // run time (0: until Count sessions)
	Messages    int           // messages per session
	Rcpts       int           // recipients per message (generated mail only)
	Mail        *MailFile     // the message to send (nil: generated)
	// Progress, when set, is called about every 200 ms and at the end with
	// the sessions done so far and the fraction of the run done (0..1).
	Progress func(done, errors int64, frac float64)
}

// StageStats are the latencies of one stage, in milliseconds.
type StageStats struct {
	Stage string  `json:"stage"`
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// LoadResult is the outcome of a load run.
type LoadResult struct {
	Filter         string         `json:"filter"`
	Concurrency    int            `json:"concurrency"`
	Sessions       int64          `json:"sessions"`
	Messages       int64          `json:"messages"`
	Errors         int64          `json:"errors"`
	ElapsedSec     float64        `json:"elapsed_s"`
	SessionsPerSec float64        `json:"sessions_per_s"`
	MessagesPerSec float64        `json:"messages_per_s"`
	Verdicts       map[string]int `json:"verdicts"`
	Stages         []StageStats   `json:"stages"`
	FirstError     string         `json:"first_error,omitempty"`
}

// hist is a log-linear latency histogram (nanoseconds).
type hist struct {
	n   int64
	max int64
	b   []int64
}

const subBits = 6

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - subBits - 1
	return (e+1)<<subBits + int(v>>e) - 1<<subBits
}

func bucketValue(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits - 1
	m := int64(i&(1<<subBits-1) | 1<<subBits)
	return (m<<e + (m+1)<<e) / 2
}

func (h *hist) add(d time.Duration) {
	v := int64(d)
	i := bucketOf(v)
	if i >= len(h.b) {
		h.b = slices.Grow(h.b, i+1-len(h.b))[:i+1]
	}
	h.b[i]++
	h.n++
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	if len(o.b) > len(h.b) {
		h.b = slices.Grow(h.b, len(o.b)-len(h.b))[:len(o.b)]
	}
	for i, c := range o.b {
		h.b[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

func (h *hist) pct(p float64) float64 {
	if h.n == 0 {
		return 0
	}
	want := int64(float64(h.n)*p/100 + 0.999999)
	var c int64
	for i, n := range h.b {
		if c += n; c >= max(want, 1) {
			return float64(min(bucketValue(i), h.max)) / 1e6
		}
	}
	return float64(h.max) / 1e6
}

// stage names in report order; "open" is connect and negotiation,
// "session" a whole session.
var loadStages = []string{"open", "connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom", "session"}

type worker struct {
	h        map[string]*hist
	verdicts map[string]int
}

func (w *worker) add(stage string, d time.Duration) {
	h := w.h[stage]
	if h == nil {
		h = &hist{}
		w.h[stage] = h
	}
	h.add(d)
}

// GeneratedMail is the message load mode sends by default.
func GeneratedMail(rcpts int) *MailFile {
	var b strings.Builder
	b.WriteString("From: Load Sender <sender@example.org>\nTo: rcpt0@example.com\nSubject: mtasim load test\n")
	b.WriteString("Message-Id: <load@mtasim.example.org>\nDate: Thu, 1 Jan 2026 00:00:00 +0000\n\n")
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 2) + "\n"
	for b.Len() < 2048 {
		b.WriteString(line)
	}
	m := &MailFile{Content: []byte(b.String()), From: "<sender@example.org>"}
	for i := 0; i < max(rcpts, 1); i++ {
		m.Rcpts = append(m.Rcpts, fmt.Sprintf("<rcpt%d@example.com>", i))
	}
	return m
}

// RunLoad runs the load and returns its result. Sessions that fail are
// counted in Errors; the run goes on.
func RunLoad(ctx context.Context, cfg *Config, opt LoadOptions) (*LoadResult, error) {
	if opt.Concurrency <= 0 {
		opt.Concurrency = 1
	}
	if opt.Count <= 0 && opt.Duration <= 0 {
		opt.Count = 100
	}
	if opt.Messages <= 0 {
		opt.Messages = 1
	}
	mail := opt.Mail
	if mail == nil {
		mail = GeneratedMail(opt.Rcpts)
	} else if err := mail.Envelope(); err != nil {
		return nil, err
	}
	var (
		started, done, errs, msgs atomic.Int64
		firstErr                  atomic.Value
		end                       time.Time
	)
	start := time.Now()
	if opt.Duration > 0 {
		end = start.Add(opt.Duration)
	}
	frac := func() float64 {
		f := 0.0
		if opt.Count > 0 {
			f = float64(done.Load()+errs.Load()) / float64(opt.Count)
		}
		if opt.Duration > 0 {
			f = max(f, float64(time.Since(start))/float64(opt.Duration))
		}
		return min(f, 1)
	}
	next := func() bool {
		if ctx.Err() != nil || !end.IsZero() && time.Now().After(end) {
			return false
		}
		return opt.Count <= 0 || started.Add(1) <= int64(opt.Count)
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if opt.Progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					opt.Progress(done.Load(), errs.Load(), frac())
				}
			}
		}()
	}
	workers := make([]*worker, opt.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{h: map[string]*hist{}, verdicts: map[string]int{}}
		workers[i] = w
		c := *cfg
		c.Log = nil
		c.OnStage = func(k pmult.Kind, d time.Duration) { w.add(k.String(), d) }
		c.OnMessage = func(r *Result) {
			msgs.Add(1)
			w.verdicts[r.outcome()]++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next() {
				if err := loadSession(ctx, &c, w, mail, opt.Messages); err != nil {
					if ctx.Err() != nil {
						return
					}
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	if opt.Progress != nil {
		opt.Progress(done.Load(), errs.Load(), 1)
	}
	el := time.Since(start)
	res := &LoadResult{
		Concurrency: opt.Concurrency, Sessions: done.Load(), Messages: msgs.Load(), Errors: errs.Load(),
		ElapsedSec: el.Seconds(), Verdicts: map[string]int{},
	}
	if cfg.Backend != nil {
		res.Filter = cfg.Backend.Name()
	}
	res.SessionsPerSec = float64(res.Sessions) / el.Seconds()
	res.MessagesPerSec = float64(res.Messages) / el.Seconds()
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	all := map[string]*hist{}
	for _, w := range workers {
		for k, v := range w.verdicts {
			res.Verdicts[k] += v
		}
		for k, h := range w.h {
			if all[k] == nil {
				all[k] = &hist{}
			}
			all[k].merge(h)
		}
	}
	for _, st := range loadStages {
		if h := all[st]; h != nil && h.n > 0 {
			res.Stages = append(res.Stages, StageStats{Stage: st, Count: h.n,
				P50: h.pct(50), P95: h.pct(95), P99: h.pct(99), Max: float64(h.max) / 1e6})
		}
	}
	return res, ctx.Err()
}

func loadSession(ctx context.Context, cfg *Config, w *worker, m *MailFile, n int) error {
	t0 := time.Now()
	s, err := NewSession(ctx, cfg)
	if err != nil {
		return err
	}
	w.add("open", time.Since(t0))
	defer s.Close(ctx)
	for i := 0; i < n; i++ {
		if _, err := SendMail(ctx, s, m); err != nil {
			return err
		}
	}
	if _, err := s.Input(ctx, "QUIT"); err != nil {
		return err
	}
	w.add("session", time.Since(t0))
	return nil
}

// Print writes the result as a table.
func (r *LoadResult) Print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "filter %s, concurrency %d: %d sessions, %d messages, %d errors in %.2fs\n",
		r.Filter, r.Concurrency, r.Sessions, r.Messages, r.Errors, r.ElapsedSec)
	fmt.Fprintf(&b, "throughput: %.1f sessions/s, %.1f messages/s\n", r.SessionsPerSec, r.MessagesPerSec)
	if len(r.Verdicts) > 0 {
		keys := make([]string, 0, len(r.Verdicts))
		for k := range r.Verdicts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("verdicts:")
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%d", k, r.Verdicts[k])
		}
		b.WriteString("\n")
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(&b, "%-8s %9s %9s %9s %9s %9s\n", "stage", "count", "p50 ms", "p95 ms", "p99 ms", "max ms")
	for _, s := range r.Stages {
		fmt.Fprintf(&b, "%-8s %9d %9.3f %9.3f %9.3f %9.3f\n", s.Stage, s.Count, s.P50, s.P95, s.P99, s.Max)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JSON writes the result as one JSON object.
func (r *LoadResult) JSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// ProgressBar returns a Progress func drawing a bar on a terminal (w).
func ProgressBar(w io.Writer, start time.Time) func(done, errs int64, frac float64) {
	return func(done, errs int64, frac float64) {
		const width = 30
		n := int(frac * width)
		rate := float64(done) / max(time.Since(start).Seconds(), 1e-9)
		fmt.Fprintf(w, "\r[%s%s] %3.0f%% %d sessions %.0f/s %d errors ", strings.Repeat("#", n),
			strings.Repeat(".", width-n), frac*100, done, rate, errs)
		if frac >= 1 {
			fmt.Fprint(w, "\n")
		}
	}
}
