package arena

import "testing"

// Lists and values from one arena are independent: filling or growing
// one leaves the others as they were.
func TestIndependent(t *testing.T) {
	a := Arena[int]{Chunk: 8}
	x := append(a.Take(2), 1, 2)
	y := append(a.Take(3), 3, 4, 5)
	p := a.New(6)
	x = append(x, 99) // beyond its room: reallocates, y untouched
	if y[0] != 3 || y[1] != 4 || y[2] != 5 || *p != 6 {
		t.Fatalf("y %v, *p %d after growing x %v", y, *p, x)
	}
	z := append(a.Take(4), 7, 8, 9, 10) // more than left: a new array
	if y[2] != 5 || *p != 6 || z[3] != 10 {
		t.Fatalf("y %v, *p %d, z %v", y, *p, z)
	}
	if big := a.Take(3); cap(big) != 3 { // > Chunk/4: its own array
		t.Fatalf("cap %d", cap(big))
	}
}

// One allocation per chunk of values.
func TestAllocs(t *testing.T) {
	var a Arena[[4]int]
	n := testing.AllocsPerRun(1600, func() { a.New([4]int{1}) })
	if n > 0.1 {
		t.Fatalf("%.2f allocations per value, want 1/16", n)
	}
}
