// dir.go: private temp directories that unprivileged daemons (postfix,
// nobody, mailfromd) can enter, unlike t.TempDir()'s 0700 parents.

package realpeer

import (
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// Dir creates a fresh directory (mode 0755) under the system temp directory
// and removes it in t.Cleanup (registered first, so it runs after the
// processes started later are stopped). Use it instead of t.TempDir():
// t.TempDir()'s parent is mode 0700, which user postfix, nobody and
// mailfromd cannot search. Every parent of the new directory must be
// searchable by others; Dir fails the test otherwise.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "realpeer-")
	if err != nil {
		t.Fatalf("realpeer: Dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("realpeer: Dir: %v", err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("realpeer: Dir: %v", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("realpeer: Dir: %s (a parent of %s) is not searchable by others (mode %v); "+
				"daemons running as postfix/nobody could not reach their files: set TMPDIR to /tmp",
				p, dir, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	return dir
}

// lookupIDs returns the uid and gid of a system user.
func lookupIDs(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("realpeer: user %s: %v (is its package installed? sh %s)", name, err, InstallScript)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// chownUser gives path to a system user (and its primary group).
func chownUser(t testing.TB, path, name string) {
	t.Helper()
	uid, gid := lookupIDs(t, name)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatalf("realpeer: chown %s %s: %v (the tests must run as root)", name, path, err)
	}
}

// byTime returns the names in dir that keep accepts, oldest file first
// (by modification time, then name).
func byTime(dir string, keep func(name string) bool) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		mod  time.Time
	}
	var fs []file
	for _, e := range ents {
		if !keep(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		fs = append(fs, file{e.Name(), fi.ModTime()})
	}
	sort.Slice(fs, func(i, j int) bool {
		if !fs[i].mod.Equal(fs[j].mod) {
			return fs[i].mod.Before(fs[j].mod)
		}
		return fs[i].name < fs[j].name
	})
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return names, nil
}
