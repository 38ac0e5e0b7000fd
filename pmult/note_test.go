package pmult_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// A front's own policy (Session.Note) lands in the decision record of
// the message it was noted in (a connection's: of every message), under
// "pmult", in the decision line and in `pmult why`.
func TestSessionNote(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := pmult.NewRecorder(10)
	e := &pmult.Engine{Log: log, Records: rec, Slots: []pmult.Slot{{Backend: pmult.Func("b", pmult.Caps{},
		func(context.Context, *pmult.Event) (pmult.Reply, error) { return pmult.Reply{}, nil })}}}
	ctx := context.Background()
	s := e.NewSession("9", log)
	s.Open(ctx, pmult.Offer{}, nil)
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "c.example", Family: '4', Address: "192.0.2.1"})
	s.Note(pmult.KindConnect, pmult.Note{What: "conn_note", Action: "x"})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q1"}}}})
	s.Note(pmult.KindHeader, pmult.Note{What: "loop_marker", Action: "unfiltered"})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<b@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q2"}}}})
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
	s.Close()

	q1, q2 := rec.Find("Q1"), rec.Find("Q2")
	if len(q1) != 1 || len(q2) != 1 {
		t.Fatalf("records: Q1 %d, Q2 %d", len(q1), len(q2))
	}
	conn := pmult.RecPolicy{What: "conn_note", Backend: "pmult", Stage: pmult.KindConnect, Action: "x"}
	loop := pmult.RecPolicy{What: "loop_marker", Backend: "pmult", Stage: pmult.KindHeader, Action: "unfiltered"}
	if p := q1[0].Policy; len(p) != 2 || p[0] != conn || p[1] != loop {
		t.Errorf("Q1 policies %+v", p)
	}
	if p := q2[0].Policy; len(p) != 1 || p[0] != conn {
		t.Errorf("Q2 policies %+v (the message note must not carry over)", p)
	}
	if !strings.Contains(buf.String(), "loop_marker:pmult@header=unfiltered") {
		t.Errorf("decision lines lack the note:\n%s", buf.String())
	}
}

// With HoldDecisions, a message the engine lets through at EOM is
// recorded with the reply the front gives it (EndMessage), its Notes
// included; one whose EndMessage never comes ends with the engine's EOM
// reply when the session does.
func TestHoldDecisions(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := pmult.NewRecorder(10)
	signer := pmult.Func("signer", pmult.Caps{Actions: pmult.ActAddHeaders}, func(_ context.Context, ev *pmult.Event) (pmult.Reply, error) {
		if ev.Kind == pmult.KindEOM {
			return pmult.Reply{Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Signed", Value: " yes"}}}, nil
		}
		return pmult.Reply{}, nil
	})
	e := &pmult.Engine{Log: log, Records: rec, Slots: []pmult.Slot{{Backend: signer}}}
	ctx := context.Background()
	s := e.NewSession("9", log)
	s.Open(ctx, pmult.Offer{Actions: pmult.ActModify}, nil)
	s.HoldDecisions()
	s.Handle(ctx, &pmult.Event{Kind: pmult.KindConnect, Hostname: "c.example", Family: '4', Address: "192.0.2.1"})
	message := func(qid string) pmult.Reply {
		s.Handle(ctx, &pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
			Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", qid}}}})
		s.Handle(ctx, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<b@example.com>"}})
		return s.Handle(ctx, &pmult.Event{Kind: pmult.KindEOM})
	}
	if r := message("H1"); r.Verdict.Objects() || len(r.Edits) != 1 {
		t.Fatalf("EOM: %+v", r)
	}
	if got := rec.Find("H1"); len(got) != 0 {
		t.Fatalf("record ended at EOM: %+v", got)
	}
	s.Note(pmult.KindEOM, pmult.Note{What: "next_hop", Action: "data"})
	s.EndMessage(pmult.Reply{Verdict: pmult.Tempfail, Text: "451 4.4.1 next hop down", From: "pmult"})
	s.EndMessage(pmult.Reply{}) // nothing held: nothing happens
	h1 := rec.Find("H1")
	if len(h1) != 1 {
		t.Fatalf("H1 records: %+v", h1)
	}
	r := h1[0]
	if r.Reply != pmult.Tempfail || r.By != "pmult" || r.Text != "451 4.4.1 next hop down" || r.Ended != "eom" {
		t.Errorf("H1 ended %s %v by %s %q", r.Ended, r.Reply, r.By, r.Text)
	}
	if len(r.Policy) != 1 || r.Policy[0].What != "next_hop" || len(r.Edits) != 1 || r.Edits[0].Note != "not applied: tempfail" {
		t.Errorf("H1 policies %+v edits %+v", r.Policy, r.Edits)
	}

	// Held, then the session ends: the engine's own EOM reply.
	message("H2")
	s.Close()
	h2 := rec.Find("H2")
	if len(h2) != 1 || h2[0].Ended != "eom" || h2[0].Reply.Objects() || len(h2[0].Edits) != 1 || h2[0].Edits[0].Note != "" {
		t.Errorf("H2 records %+v", h2)
	}
	if n := strings.Count(buf.String(), "msg=decision"); n != 2 {
		t.Errorf("%d decision lines, want 2:\n%s", n, buf.String())
	}
}
