package pmult_test

import (
	"context"
	"testing"

	. "github.com/mailmux/mailmux/pmult"
)

// batching is a backend like instant whose sessions batch (Hold/Flush).
// answers: it answers content too (then the engine owes the answers of
// content posted ahead and settles them later); otherwise it leaves
// content unanswered.
type batching struct {
	name    string
	answers bool
}

func (b batching) Name() string { return b.name }
func (b batching) Open(context.Context, OpenInfo) (BackendSession, error) {
	return batchingSession{answers: b.answers}, nil
}

type batchingSession struct {
	instantSession
	answers bool
}

var content = Kinds(KindHeader, KindEOH, KindBody)

func (s batchingSession) Caps() Caps {
	if s.answers {
		return Caps{}
	}
	return Caps{NoReply: content}
}
func (s batchingSession) Post(_ context.Context, ev *Event) (bool, error) {
	return s.answers || !content.Has(ev.Kind), nil
}
func (batchingSession) Hold()        {}
func (batchingSession) Flush() error { return nil }

// BenchmarkMessageBatched runs whole messages (MAIL to EOM, ten headers,
// four body chunks) through three batching backends that leave content
// unanswered: content is posted ahead.
func BenchmarkMessageBatched(b *testing.B) {
	benchMessage(b, false, Offer{})
}

// BenchmarkMessageOwed is BenchmarkMessageBatched with backends that
// answer content the MTA (deferring content) reads no reply to: the
// answers are owed and settled at end of message.
func BenchmarkMessageOwed(b *testing.B) {
	benchMessage(b, true, Offer{DeferContent: true})
}

func benchMessage(b *testing.B, answers bool, extra Offer) {
	e := &Engine{Slots: []Slot{{Backend: batching{"a", answers}}, {Backend: batching{"b", answers}}, {Backend: batching{"c", answers}}}}
	s := e.NewSession("bench", nil)
	ctx := context.Background()
	offer := allOffer
	offer.NoReply = content
	offer.DeferContent = extra.DeferContent
	s.Open(ctx, offer, nil)
	defer s.Close()
	s.Handle(ctx, &Event{Kind: KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.1"})
	s.Handle(ctx, &Event{Kind: KindHelo, Arg: "h"})
	mail := &Event{Kind: KindMail, Args: []string{"<a@example.org>"}}
	rcpt := &Event{Kind: KindRcpt, Args: []string{"<b@example.net>"}}
	data := &Event{Kind: KindData}
	var hdrs []*Event
	for _, n := range []string{"From", "To", "Subject", "Date", "Message-Id", "Received", "Received", "MIME-Version", "Content-Type", "X-Mailer"} {
		hdrs = append(hdrs, &Event{Kind: KindHeader, Name: n, Value: " value of " + n})
	}
	eoh := &Event{Kind: KindEOH}
	body := &Event{Kind: KindBody, Chunk: make([]byte, 4096)}
	eom := &Event{Kind: KindEOM}
	b.ReportAllocs()
	for b.Loop() {
		for _, ev := range []*Event{mail, rcpt, data} {
			if r := s.Handle(ctx, ev); r.Verdict != Continue {
				b.Fatal(ev.Kind, r)
			}
		}
		for _, ev := range hdrs {
			s.Handle(ctx, ev)
		}
		s.Handle(ctx, eoh)
		for range 4 {
			s.Handle(ctx, body)
		}
		if r := s.Handle(ctx, eom); r.Verdict != Continue {
			b.Fatal("EOM", r)
		}
	}
}

// BenchmarkEnvelopeAssigned is BenchmarkEnvelope where the first backend
// set a macro at CONNECT: the backends after it get a copy of each RCPT
// with the macro in its set.
func BenchmarkEnvelopeAssigned(b *testing.B) {
	setter := Func("setter", Caps{}, func(_ context.Context, ev *Event) (Reply, error) {
		if ev.Kind == KindConnect {
			return Reply{Verdict: Continue, Macros: []Assignment{{Name: "{x_reputation}", Value: "good"}}}, nil
		}
		return Reply{Verdict: Continue}, nil
	})
	benchRcpt(b, &Engine{Slots: []Slot{{Backend: setter}, {Backend: instant{"b"}}, {Backend: instant{"c"}}}})
}
