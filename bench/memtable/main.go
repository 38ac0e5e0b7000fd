// Command memtable measures pmult's memory for big messages: it runs the
// pmult binary (one or several builds, e.g. before and after a change, in
// the same run) with two serial editors (test milters in this process that
// add a header at end of message), sends one message of -size bytes, then
// -conc at once, as a fake MTA in this process, and reads the pmult
// process's peak RSS (VmHWM) and its RSS right after and -wait later, as
// ratios to the message size. Only pmult's process is measured.
//
//	go build -o /tmp/pmult ./cmd/pmult
//	go run ./bench/memtable -bin after=/tmp/pmult [-bin before=/tmp/pmult-old] [-config 'spool_memory = 65536']
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

type bins []string

func (b *bins) String() string     { return strings.Join(*b, ",") }
func (b *bins) Set(s string) error { *b = append(*b, s); return nil }

func main() {
	var bs bins
	flag.Var(&bs, "bin", "name=path of a pmult binary (repeatable)")
	size := flag.Int("size", 30<<20, "message body bytes")
	concs := flag.String("conc", "1,10", "concurrent messages, comma separated")
	wait := flag.Duration("wait", 30*time.Second, "how long after the messages RSS is read again")
	extra := flag.String("config", "", "extra top-level TOML for pmult's configuration")
	replace := flag.Bool("replace", false, "the first editor replaces the body (same size)")
	flag.Parse()
	if len(bs) == 0 {
		fmt.Fprintln(os.Stderr, "memtable: -bin name=path is required")
		os.Exit(64)
	}
	eds, err := startEditors(*size, *replace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memtable:", err)
		os.Exit(1)
	}
	fmt.Printf("message %d bytes (%.0f MiB), two serial editors; RSS of the pmult process, as a ratio to the message size\n\n", *size, float64(*size)/(1<<20))
	fmt.Println("| build | messages at once | idle RSS MiB | peak RSS MiB | peak / size | RSS after MiB | RSS after " + wait.String() + " MiB | after " + wait.String() + " / size |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, b := range bs {
		name, path, ok := strings.Cut(b, "=")
		if !ok {
			name, path = filepath.Base(b), b
		}
		for _, cs := range strings.Split(*concs, ",") {
			conc, _ := strconv.Atoi(cs)
			r, err := measure(path, eds, *extra, *size, conc, *wait)
			if err != nil {
				fmt.Fprintf(os.Stderr, "memtable: %s, %d at once: %v\n", name, conc, err)
				os.Exit(1)
			}
			mib := func(kb int) float64 { return float64(kb) / 1024 }
			ratio := func(kb int) float64 { return float64(kb) * 1024 / float64(*size) }
			fmt.Printf("| %s | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", name, conc, mib(r.idle), mib(r.peak),
				ratio(r.peak), mib(r.after), mib(r.later), ratio(r.later))
		}
	}
}

type result struct{ idle, peak, after, later int } // KiB

// startEditors starts two test milters that count the body bytes they get
// and add a header at EOM saying how many.
func startEditors(size int, replace bool) ([]string, error) {
	var addrs []string
	for i := 1; i <= 2; i++ {
		var mu sync.Mutex
		got := map[*testmilter.Conn]int{}
		name := fmt.Sprintf("X-Editor-%d", i)
		s := &testmilter.Server{Actions: mp.ActAddHeaders | mp.ActChangeBody, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			mu.Lock()
			defer mu.Unlock()
			switch p.Code {
			case mp.CmdBody:
				got[c] += len(p.Data)
				c.Body = c.Body[:0] // keep nothing: only pmult is measured
			case mp.CmdEOB:
				n := got[c]
				delete(got, c)
				ps := []mp.Packet{testmilter.Reply(mp.RespAddHeader, testmilter.Str(name, strconv.Itoa(n)))}
				if replace && i == 1 {
					for left := size; left > 0; left -= len(bodyChunk) {
						ps = append(ps, mp.Packet{Code: mp.RespReplBody, Data: bodyChunk[:min(left, len(bodyChunk))]})
					}
				}
				return append(ps, mp.Packet{Code: mp.RespContinue})
			}
			return nil
		}}
		a, err := s.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a.String())
	}
	return addrs, nil
}

func measure(bin string, eds []string, extra string, size, conc int, wait time.Duration) (result, error) {
	var r result
	dir, err := os.MkdirTemp("", "memtable-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "pmult.sock")
	cfg := fmt.Sprintf("listen = [\"unix:%s\"]\n%s\n", sock, extra)
	for i, a := range eds {
		h, p, _ := net.SplitHostPort(a)
		cfg += fmt.Sprintf("[[backend]]\nname = \"ed%d\"\nurl = \"inet:%s@%s\"\n", i+1, p, h)
	}
	cf := filepath.Join(dir, "pmult.toml")
	if err := os.WriteFile(cf, []byte(cfg), 0o644); err != nil {
		return r, err
	}
	cmd := exec.Command(bin, "-c", cf, "-x")
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			return r, fmt.Errorf("pmult did not listen: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	if r.idle, err = status(pid, "VmRSS"); err != nil {
		return r, err
	}
	var wg sync.WaitGroup
	errs := make([]error, conc)
	for i := range conc {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = send(sock, size) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("%w\npmult log:\n%s", err, logs.String())
	}
	if r.peak, err = status(pid, "VmHWM"); err != nil {
		return r, err
	}
	if r.after, err = status(pid, "VmRSS"); err != nil {
		return r, err
	}
	time.Sleep(wait)
	r.later, err = status(pid, "VmRSS")
	return r, err
}

// status reads a "kB" field of /proc/pid/status.
func status(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// bodyChunk is one 64 KiB chunk of the message (and of a replacement).
var bodyChunk = func() []byte {
	b := make([]byte, 65535)
	for i := range b {
		b[i] = "0123456789abcdef\r\n"[i%18]
	}
	return b
}()

var offer = pmult.Offer{Actions: 0x1FF &^ pmult.ActSetSymList, SymList: true, Skip: true,
	RejectedRcpts: true, LeadingSpace: true, Version: 6}

// send is one SMTP session with one message of size body bytes, in
// Postfix's 64 KiB chunks; both editors must have seen the whole body.
func send(sock string, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := backend.New(backend.Config{Network: "unix", Address: sock, ReadTimeout: 5 * time.Minute, EOMTimeout: 5 * time.Minute})
	s, err := c.Open(ctx, pmult.OpenInfo{Offer: offer})
	if err != nil {
		return err
	}
	defer s.Close()
	chunk := bodyChunk
	evs := []*pmult.Event{
		{Kind: pmult.KindConnect, Hostname: "client.example.org", Family: '4', Port: 40000, Address: "192.0.2.7"},
		{Kind: pmult.KindHelo, Arg: "client.example.org"},
		{Kind: pmult.KindMail, Args: []string{"<sender@example.org>"}},
		{Kind: pmult.KindRcpt, Args: []string{"<rcpt@example.com>"}},
		{Kind: pmult.KindData},
		{Kind: pmult.KindHeader, Name: "Subject", Value: " big"},
		{Kind: pmult.KindEOH},
	}
	for _, ev := range evs {
		if _, err := s.Handle(ctx, ev); err != nil {
			return fmt.Errorf("%s: %w", ev.Kind, err)
		}
	}
	for left := size; left > 0; left -= len(chunk) {
		if _, err := s.Handle(ctx, &pmult.Event{Kind: pmult.KindBody, Chunk: chunk[:min(left, len(chunk))]}); err != nil {
			return fmt.Errorf("body: %w", err)
		}
	}
	rep, err := s.Handle(ctx, &pmult.Event{Kind: pmult.KindEOM})
	if err != nil {
		return fmt.Errorf("eom: %w", err)
	}
	seen := 0
	for _, e := range rep.Edits {
		if strings.HasPrefix(e.Name, "X-Editor-") && strings.TrimSpace(e.Value) == strconv.Itoa(size) {
			seen++
		}
	}
	if rep.Verdict != pmult.Continue || seen != 2 {
		return fmt.Errorf("eom: %+v: want both editors to have seen %d bytes", rep, size)
	}
	return nil
}
