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
