// codec_test.go: the modelled pmilter codec: round trips, framing errors,
// and fuzzing of the record parser.

package pmilter

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var e Encoder
	e.Begin(nil, RTRcpt, "S1")
	e.String(FAddr, "<a@b>")
	e.Uint32(FRcptIdx, 3)
	e.IntString(FMacro, MacroTaid, "T1")
	e.AppendHdrMod(HdrMod{Type: HdrInsert, Pos: 2, Name: "X", Value: " y"})
	b := e.End()
	rec, err := ReadRecord(bufio.NewReader(bytes.NewReader(b)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Type != RTRcpt || rec.Session != "S1" || rec.Version != ProtocolVersion || len(rec.Entries) != 4 {
		t.Fatalf("%+v", rec)
	}
	if n, _ := Uint32Of(rec.Entries[1]); n != 3 {
		t.Errorf("idx %d", n)
	}
	if id, v, _ := IntStringOf(rec.Entries[2]); id != MacroTaid || v != "T1" {
		t.Errorf("macro %d %q", id, v)
	}
	if h, err := HdrModOf(rec.Entries[3]); err != nil || h != (HdrMod{HdrInsert, 2, "X", " y"}) {
		t.Errorf("hdrmod %+v %v", h, err)
	}
}

func TestFramingErrors(t *testing.T) {
	var e Encoder
	e.Begin(nil, RTEhlo, "S1")
	e.String(FHelo, "h")
	good := e.End()
	read := func(b []byte) error {
		_, err := ReadRecord(bufio.NewReader(bytes.NewReader(b)), 0)
		return err
	}
	var fe *FrameError
	if err := read([]byte{0, 0, 0, 3}); !errors.As(err, &fe) {
		t.Errorf("short length: %v", err)
	}
	if err := read([]byte{0x7f, 0, 0, 0}); !errors.As(err, &fe) {
		t.Errorf("huge length: %v", err)
	}
	for i := 1; i < len(good); i++ {
		if err := read(good[:i]); !errors.Is(err, ErrTruncated) {
			t.Errorf("truncated at %d: %v", i, err)
		}
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-6] = 9 // helo entry length 9 > 1 byte left
	var re *RecordError
	if err := read(bad); !errors.As(err, &re) || !re.HasSession || re.Session != "S1" {
		t.Errorf("bogus entry length: %v", err)
	}
}

func FuzzParseRecord(f *testing.F) {
	var e Encoder
	e.Begin(nil, RTMail, "S9")
	e.String(FAddr, "<x@y>")
	e.String(FArg, "SIZE=1")
	f.Add(e.End()[4:])
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := ParseRecord(b)
		if err != nil {
			return
		}
		// A parsed record encodes back to the same bytes.
		var e Encoder
		e.Begin(nil, rec.Type, rec.Session)
		for _, en := range rec.Entries {
			e.Bytes(en.Tag, en.Val)
		}
		out := e.End()
		if rec.Version == ProtocolVersion && !bytes.Equal(out[4:], b) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b, out[4:])
		}
		for _, en := range rec.Entries {
			Uint32Of(en)
			Uint32sOf(en)
			IntStringOf(en)
			HdrModOf(en)
			AddrOf(en)
		}
	})
}
