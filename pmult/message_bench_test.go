package pmult_test

import (
	"context"
	"testing"

	. "github.com/mailmux/mailmux/pmult"
)

// batching is a backend like instant whose sessions batch (Hold/Flush):
// content the MTA reads no reply to is posted ahead and settled later.
type batching struct{ name string }

func (b batching) Name() string { return b.name }
func (b batching) Open(context.Context, OpenInfo) (BackendSession, error) {
	return batchingSession{}, nil
}

type batchingSession struct{ instantSession }

func (batchingSession) Caps() Caps {
	return Caps{NoReply: Kinds(KindHeader, KindEOH, KindBody)}
}
func (batchingSession) Post(_ context.Context, ev *Event) (bool, error) {
	return !Kinds(KindHeader, KindEOH, KindBody).Has(ev.Kind), nil
}
func (batchingSession) Hold()        {}
func (batchingSession) Flush() error { return nil }

// BenchmarkMessageBatched runs whole messages (MAIL to EOM, ten headers,
// four body chunks) through three batching backends that leave content
// unanswered: content is posted ahead.
func BenchmarkMessageBatched(b *testing.B) {
	e := &Engine{Slots: []Slot{{Backend: batching{"a"}}, {Backend: batching{"b"}}, {Backend: batching{"c"}}}}
	s := e.NewSession("bench", nil)
	ctx := context.Background()
	offer := allOffer
	offer.NoReply = Kinds(KindHeader, KindEOH, KindBody)
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
