package cond_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
)

func errText(errs []error) string {
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	return strings.Join(all, "\n")
}

// A regular expression over the size cap (too long, or a program too
// large, which repeat counts make of a short pattern) is refused with its
// place; one within it compiles.
func TestRegexSizeCap(t *testing.T) {
	_, errs := cond.Compile("if", map[string]any{
		"sender_regex": strings.Repeat("a", cond.MaxRegexLen+1),
		"helo_regex":   strings.Repeat("b{1000}", 25),
		"any":          []any{map[string]any{"rcpt_regex": strings.Repeat("[a-z]{999}", 21)}},
	})
	got := errText(errs)
	for _, want := range []string{
		fmt.Sprintf("if.sender_regex: regular expression too long: %d bytes (the limit is %d)", cond.MaxRegexLen+1, cond.MaxRegexLen),
		"if.helo_regex: regular expression too large: ",
		"if.any[0].rcpt_regex: regular expression too large: ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if _, errs := cond.Compile("if", map[string]any{"sender_regex": `^[a-z0-9._%+-]+@(example\.(org|com)|mail\.example)$`}); errs != nil {
		t.Errorf("an ordinary regex refused: %v", errs)
	}
}

// A list file that cannot be read is a clear error naming it: a
// directory, a missing file, a line too long for the reader.
func TestUnreadableListFile(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long")
	os.WriteFile(long, []byte("10.0.0.0/8\n"+strings.Repeat("1", 70000)+"\n"), 0o644)
	_, errs := cond.Compile("if", map[string]any{
		"client_file": []any{dir, filepath.Join(dir, "missing")},
		"sender_file": long,
	})
	got := errText(errs)
	for _, want := range []string{
		"if.client_file: " + dir + ": is a directory, not a list file",
		"if.client_file: open " + filepath.Join(dir, "missing") + ": no such file or directory",
		"if.sender_file: " + long + ": after line 1: bufio.Scanner: token too long",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

// changing is a stat that reports another modification time at every
// call: the file always changes while it is read.
func changing() func(*os.File) (os.FileInfo, error) {
	var mu sync.Mutex
	n := 0
	return func(f *os.File) (os.FileInfo, error) {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		n++
		return movedInfo{fi, time.Duration(n) * time.Second}, nil
	}
}

type movedInfo struct {
	os.FileInfo
	d time.Duration
}

func (m movedInfo) ModTime() time.Time { return m.FileInfo.ModTime().Add(m.d) }

// A list file that changes while it is read (every time) is refused: no
// condition is built from part of it.
func TestListChangedWhileRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nets")
	os.WriteFile(path, []byte("10.0.0.0/8\n"), 0o644)
	c, errs := cond.CompileWithStat("if", map[string]any{"client_file": path}, changing())
	if c != nil || !strings.Contains(errText(errs), "if.client_file: "+path+": changed while it was read, 3 times: not loaded") {
		t.Errorf("got %v, %q", c, errText(errs))
	}
	if _, errs := cond.CompileWithStat("if", map[string]any{"client_file": path}, (*os.File).Stat); errs != nil {
		t.Errorf("a stable file refused: %v", errs)
	}
}

// A list replaced (by rename) while conditions are compiled again and
// again, as a reload does: every compiled condition holds the whole old
// list or the whole new one, never a mix.
func TestListReplacedUnderReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nets")
	version := func(first int) []byte {
		var b strings.Builder
		for i := 0; i < 5000; i++ {
			fmt.Fprintf(&b, "%d.%d.%d.0/24\n", first, i/256, i%256)
		}
		return []byte(b.String())
	}
	versions := [2][]byte{version(10), version(172)}
	os.WriteFile(path, versions[0], 0o644)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmp := filepath.Join(dir, fmt.Sprintf("nets.%d", i))
			os.WriteFile(tmp, versions[i%2], 0o644)
			os.Rename(tmp, path)
		}
	}()
	seen := map[int]int{}
	for i := 0; i < 40; i++ {
		c, errs := cond.Compile("if", map[string]any{"client_file": path})
		if errs != nil {
			t.Fatalf("compile %d: %v", i, errs)
		}
		at := func(addr string) pmult.Tri { return c.Eval(&pmult.Facts{At: pmult.KindConnect, Address: addr}) }
		old := at("10.0.0.1") == pmult.Yes && at("10.19.135.1") == pmult.Yes
		nu := at("172.0.0.1") == pmult.Yes && at("172.19.135.1") == pmult.Yes
		oldAny := at("10.0.0.1") == pmult.Yes || at("10.19.135.1") == pmult.Yes
		nuAny := at("172.0.0.1") == pmult.Yes || at("172.19.135.1") == pmult.Yes
		switch {
		case old && !nuAny:
			seen[10]++
		case nu && !oldAny:
			seen[172]++
		default:
			t.Fatalf("compile %d: a mixed or partial list (old %v/%v, new %v/%v)", i, old, oldAny, nu, nuAny)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("versions compiled: %v", seen)
}

// Odd TOML values where conditions go are errors with their place,
// never a panic.
func TestOddConditionValues(t *testing.T) {
	for _, v := range []any{
		nil, 5, "client", []any{1, 2},
		map[string]any{"all": "x"}, map[string]any{"any": []any{5}}, map[string]any{"not": []any{}},
		map[string]any{"client": 5}, map[string]any{"client_file": []any{5}}, map[string]any{"macro": "x"},
		map[string]any{"header_regex": map[string]any{"Subject": 5}}, map[string]any{"size_over": -1},
		map[string]any{"rcpt_match": "some", "rcpt": "a@b"}, map[string]any{"auth": "yes"},
		map[string]any{"not": map[string]any{}},
	} {
		c, errs := cond.Compile("if", v)
		if c != nil || len(errs) == 0 {
			t.Errorf("%#v: compiled (%v), want an error", v, c)
			continue
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Error(), "if") {
				t.Errorf("%#v: error without its place: %v", v, e)
			}
		}
	}
}
