package pmult_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// recEngine is two stateless backends: "signer" adds a header at end of
// message, "spam" rejects messages from spam@ at end of message; plus
// "shadow" (evaluation mode) that would reject every recipient and
// "broken" that fails at MAIL (on_failure accept).
func recEngine(log *slog.Logger, rec *pmult.Recorder) *pmult.Engine {
	signer := pmult.Func("signer", pmult.Caps{Actions: pmult.ActAddHeaders}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		if ev.Kind == pmult.KindEOM {
			return pmult.Reply{Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Signed", Value: " yes"}}}, nil
		}
		return pmult.Reply{}, nil
	})
	var spamSender bool
	spam := pmult.Func("spam", pmult.Caps{}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		switch ev.Kind {
		case pmult.KindMail:
			spamSender = strings.Contains(ev.Args[0], "spam@")
		case pmult.KindEOM:
			if spamSender {
				return pmult.Reply{Verdict: pmult.Reject, Text: "550 5.7.1 looks like spam"}, nil
			}
		}
		return pmult.Reply{}, nil
	})
	shadow := pmult.Func("shadow", pmult.Caps{Actions: pmult.ActAddHeaders}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		switch ev.Kind {
		case pmult.KindRcpt:
			return pmult.Reply{Verdict: pmult.Reject}, nil
		case pmult.KindEOM:
			return pmult.Reply{Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Shadow", Value: " 1"}}}, nil
		}
		return pmult.Reply{}, nil
	})
	broken := pmult.Func("broken", pmult.Caps{}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		if ev.Kind == pmult.KindMail {
			return pmult.Reply{}, errors.New("connection reset")
		}
		return pmult.Reply{}, nil
	})
	return &pmult.Engine{Log: log, Records: rec, Slots: []pmult.Slot{
		{Backend: signer},
		{Backend: spam},
		{Backend: shadow, Policy: pmult.Policy{Evaluate: true}},
		{Backend: broken, Policy: pmult.Policy{OnFailure: pmult.FailAccept}},
	}}
}

func recMessage(t *testing.T, s *pmult.Session, qid, from string) pmult.Reply {
	t.Helper()
	ctx := context.Background()
	q := []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", qid}}}
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<" + from + ">"}, Macros: q})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<rcpt@example.net>"}})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindHeader, Name: "Subject", Value: " hi"})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindEOH})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindBody, Chunk: []byte("hello\r\n")})
	return s.Handle(ctx, &pmult.Event{Kind: pmult.KindEOM})
}

// TestDecisionLine: one info line per message names the backend whose
// verdict won, its text, every backend's verdict and latency per stage,
// the edits by backend, and the policies that fired.
func TestDecisionLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := pmult.NewRecorder(10)
	e := recEngine(log, rec)
	ctx := context.Background()
	s := e.NewSession("7", log)
	s.Open(ctx, pmult.Offer{Actions: pmult.ActModify}, nil)
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Address: "192.0.2.1"})
	if r := recMessage(t, s, "4AB1", "spam@example.org"); r.Verdict != pmult.Reject {
		t.Fatalf("first message: %v", r)
	}
	if r := recMessage(t, s, "4AB2", "good@example.org"); r.Verdict != pmult.Continue || len(r.Edits) != 1 {
		t.Fatalf("second message: %+v", r)
	}
	s.Close()
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "msg=decision") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("want 2 decision lines, got %d:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"qid=4AB1", `client=client.example[192.0.2.1]`, "from=<spam@example.org>", "rcpts=1",
		"reply=reject", "at=eom", "by=spam", `text="550 5.7.1 looks like spam"`,
		"spam(connect=continue/", "eom=reject/", "shadow(connect=continue/", "rcpt=reject/",
		"broken(connect=continue/", "mail=failed/",
		"would:shadow@rcpt=reject", "failure:broken@mail=accept"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("first line lacks %q:\n%s", want, lines[0])
		}
	}
	if strings.Contains(lines[0], "(add_header") {
		t.Errorf("rejected message lists edits: %s", lines[0])
	}
	for _, want := range []string{"qid=4AB2", "reply=accept", "by=-", `edits="signer(add_header=1)"`, "header=continue/",
		"would_edit:shadow@eom=add_header"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("second line lacks %q:\n%s", want, lines[1])
		}
	}

	// The ring: pmult why QID.
	var why bytes.Buffer
	if ok, err := rec.WriteWhy(&why, "4AB1"); !ok || err != nil {
		t.Fatalf("WriteWhy 4AB1: %v %v", ok, err)
	}
	for _, want := range []string{"message qid=4AB1 session=7 client=client.example[192.0.2.1]", "reply reject at eom by spam",
		"eom      spam             reject", "mail     broken           failed", `err "connection reset"`,
		"would shadow at rcpt: reject"} {
		if !strings.Contains(why.String(), want) {
			t.Errorf("why lacks %q:\n%s", want, why.String())
		}
	}
	why.Reset()
	rec.WriteWhy(&why, "4AB2")
	if !strings.Contains(why.String(), "signer           add_header X-Signed: yes") ||
		!strings.Contains(why.String(), "shadow           add_header X-Shadow: 1 (evaluation)") {
		t.Errorf("why 4AB2 lacks the edit:\n%s", why.String())
	}
	if got := len(rec.Find("7")); got != 2 {
		t.Errorf("records of session 7: %d, want 2", got)
	}
	if ok, _ := rec.WriteWhy(&why, "NOSUCH"); ok {
		t.Error("WriteWhy found an unknown id")
	}

	// Metrics: latency histograms and decisions.
	var m bytes.Buffer
	e.Metrics().WriteText(&m)
	for _, want := range []string{
		"# TYPE pmult_backend_latency_seconds histogram",
		`pmult_backend_latency_seconds_bucket{backend="spam",stage="eom",le="+Inf"} 2`,
		`pmult_backend_latency_seconds_count{backend="signer",stage="rcpt"} 2`,
		`pmult_decisions_total{backend="",reply="accept"} 1`,
		`pmult_decisions_total{backend="spam",reply="reject"} 1`,
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, m.String())
		}
	}
}

// TestRecorderRing: the ring keeps the last N messages; an abort ends a
// message's record.
func TestRecorderRing(t *testing.T) {
	rec := pmult.NewRecorder(2)
	e := recEngine(nil, rec)
	e.QuietDecisions = true
	ctx := context.Background()
	s := e.NewSession("s1", nil)
	s.Open(ctx, pmult.Offer{Actions: pmult.ActModify}, nil)
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.9"})
	for _, q := range []string{"Q1", "Q2", "Q3"} {
		recMessage(t, s, q, "a@example.org")
	}
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<b@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q4"}}}})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
	s.Close()
	if len(rec.Find("Q1")) != 0 || len(rec.Find("Q2")) != 0 {
		t.Error("ring of 2 kept an old message")
	}
	r := rec.Find("Q4")
	if len(r) != 1 || r[0].Ended != "abort" || r[0].Sender != "b@example.org" {
		t.Fatalf("Q4: %+v", r)
	}
	if r := rec.Find("Q3"); len(r) != 1 || r[0].Events[0].Kind != pmult.KindConnect {
		t.Fatalf("Q3 lacks the connection's events: %+v", r)
	}
}

// BenchmarkMessageRecord is one message (MAIL, RCPT, 5 headers, EOH, a
// body chunk, EOM) through three instant backends: with the decision line
// (text handler, io.Discard) and the ring, as pmult runs by default, and
// without either.
func BenchmarkMessageRecord(b *testing.B) {
	for _, on := range []bool{true, false} {
		name := "quiet"
		if on {
			name = "line+ring"
		}
		b.Run(name, func(b *testing.B) {
			cont := func(context.Context, *pmult.Event) (pmult.Reply, error) { return pmult.Reply{}, nil }
			e := &pmult.Engine{Parallel: true, Slots: []pmult.Slot{
				{Backend: pmult.Func("a", pmult.Caps{}, cont)},
				{Backend: pmult.Func("b", pmult.Caps{}, cont)},
				{Backend: pmult.Func("c", pmult.Caps{}, cont)},
			}}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			if on {
				e.Records = pmult.NewRecorder(1000)
			} else {
				e.QuietDecisions = true
			}
			ctx := context.Background()
			s := e.NewSession("bench", log)
			s.Open(ctx, pmult.Offer{}, nil)
			defer s.Close()
			s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.1"})
			q := []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "4AB1"}}}
			mail := &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"}, Macros: q}
			rcpt := &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<b@example.net>"}}
			hdr := &pmult.Event{Kind: pmult.KindHeader, Name: "Subject", Value: " hi"}
			eoh := &pmult.Event{Kind: pmult.KindEOH}
			body := &pmult.Event{Kind: pmult.KindBody, Chunk: []byte("hello\r\n")}
			eom := &pmult.Event{Kind: pmult.KindEOM}
			b.ReportAllocs()
			for b.Loop() {
				for _, ev := range []*pmult.Event{mail, rcpt, hdr, hdr, hdr, hdr, hdr, eoh, body, eom} {
					s.Handle(ctx, ev)
				}
			}
		})
	}
}

type downBackend struct{}

func (downBackend) Name() string { return "down" }
func (downBackend) Open(context.Context, pmult.OpenInfo) (pmult.BackendSession, error) {
	return nil, fmt.Errorf("connect: %w", pmult.ErrDown)
}

// TestDecisionPolicies: a backend skipped by its breaker (down), one that
// times out, and their failure actions are in the line and the record.
func TestDecisionPolicies(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slow := pmult.Func("slow", pmult.Caps{}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
		if ev.Kind == pmult.KindRcpt {
			return pmult.Reply{}, fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
		}
		return pmult.Reply{}, nil
	})
	rec := pmult.NewRecorder(4)
	e := &pmult.Engine{Log: log, Records: rec, Slots: []pmult.Slot{
		{Backend: downBackend{}, Policy: pmult.Policy{OnFailure: pmult.FailAccept}},
		{Backend: slow, Policy: pmult.Policy{OnFailure: pmult.FailTempfail}},
	}}
	ctx := context.Background()
	s := e.NewSession("p1", log)
	s.Open(ctx, pmult.Offer{}, nil)
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.3"})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "P1"}}}})
	if r := s.Handle(ctx, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<b@example.net>"}}); r.Verdict != pmult.Tempfail {
		t.Fatalf("rcpt: %+v", r)
	}
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
	s.Close()
	line := buf.String()
	for _, want := range []string{"msg=decision", "qid=P1", "reply=abort", "rcpts=0 rcpts_rejected=1",
		`policies="down:down@open=accept timeout:slow@rcpt=tempfail"`, "slow(connect=continue/", "rcpt=failed/"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q:\n%s", want, line)
		}
	}
	var why bytes.Buffer
	rec.WriteWhy(&why, "P1")
	for _, want := range []string{"rcpts=0 rcpts_rejected=1", "reply abort at abort", "down down at open: accept",
		"timeout slow at rcpt: tempfail", "rcpt     slow             failed"} {
		if !strings.Contains(why.String(), want) {
			t.Errorf("why lacks %q:\n%s", want, why.String())
		}
	}
}
