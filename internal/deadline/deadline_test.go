package deadline

import (
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l Lazy
	d := 16 * time.Second // slack 1 s
	steps := []struct {
		at   time.Duration // since t0
		d    time.Duration
		set  bool
		want time.Duration // the deadline, since t0
	}{
		{0, d, true, 17 * time.Second},                                                              // none known: set now+d+d/16
		{500 * time.Millisecond, d, false, 17 * time.Second},                                        // within the slack: kept
		{time.Second, d, false, 17 * time.Second},                                                   // at its edge: kept
		{1001 * time.Millisecond, d, true, 18001 * time.Millisecond},                                // would fire early: set
		{1002 * time.Millisecond, 160 * time.Second, true, 1002*time.Millisecond + 170*time.Second}, // longer timeout: set
		{1003 * time.Millisecond, d, true, 1003*time.Millisecond + 17*time.Second},                  // shorter again: the long one would fire late: set
	}
	for i, s := range steps {
		got, set := l.Next(t0.Add(s.at), s.d)
		if set != s.set || !got.Equal(t0.Add(s.want)) {
			t.Errorf("step %d: Next = %v, %v; want %v, %v", i, got.Sub(t0), set, s.want, s.set)
		}
	}
	l.Forget()
	if _, set := l.Next(t0.Add(1004*time.Millisecond), d); !set {
		t.Error("after Forget: not set")
	}
}
