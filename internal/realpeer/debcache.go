// debcache.go: the private per-machine caches of unpacked Debian packages
// (Exim, Sendmail): fetched with "apt-get download", unpacked with
// "dpkg -x", one directory per version, marked READY when complete.

package realpeer

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// debCache is one cache of unpacked Debian packages.
type debCache struct {
	dir     string   // the cache directory
	what    string   // what is unpacked, for messages ("Exim")
	pkgs    []string // the packages downloaded and unpacked together
	version string   // the package (one of pkgs) whose version names the directory
	// fix checks or adjusts the unpacked root before it is marked READY.
	fix func(root string) error
}

// readyRoot returns the newest ready version directory in dir, or "".
func readyRoot(dir string) string {
	ready, _ := filepath.Glob(filepath.Join(dir, "*", "READY"))
	sort.Strings(ready)
	if len(ready) == 0 {
		return ""
	}
	return filepath.Dir(ready[len(ready)-1])
}

// prepare returns the newest ready unpacked root in the cache, else
// downloads and unpacks the packages there (under dir/.lock, so that
// concurrent test processes serialize).
func (dc debCache) prepare() (string, error) {
	if root := readyRoot(dc.dir); root != "" {
		return root, nil
	}
	pkgs := strings.Join(dc.pkgs, " ")
	if err := os.MkdirAll(dc.dir, 0o755); err != nil {
		return "", fmt.Errorf("cache %s: %w (sh %s prepares it as root)", dc.dir, err, InstallScript)
	}
	lock, err := os.OpenFile(filepath.Join(dc.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("cache lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if root := readyRoot(dc.dir); root != "" { // made while we waited
		return root, nil
	}
	aptGet, err := ToolPath("apt-get")
	if err != nil {
		return "", fmt.Errorf("no %s in %s and cannot fetch %s: %w (sh %s prepares it as root)", dc.what, dc.dir, pkgs, err, InstallScript)
	}
	dpkg, err := ToolPath("dpkg")
	if err != nil {
		return "", fmt.Errorf("no %s in %s and cannot fetch %s: %w (sh %s prepares it as root)", dc.what, dc.dir, pkgs, err, InstallScript)
	}
	tmp, err := os.MkdirTemp(dc.dir, ".fetch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command(aptGet, append([]string{"download", "-q", "-o", "APT::Sandbox::User=root"}, dc.pkgs...)...)
	dl.Dir = tmp
	if out, err := runWithTimeout(dl, 5*time.Minute); err != nil {
		return "", fmt.Errorf("no %s in %s, and apt-get download %s failed: %w\n%s\n(run sh %s as root; it runs apt-get update first)",
			dc.what, dc.dir, pkgs, err, out, InstallScript)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	version := ""
	for _, d := range debs {
		if parts := strings.Split(filepath.Base(d), "_"); len(parts) == 3 && parts[0] == dc.version {
			version, _ = url.PathUnescape(parts[1])
		}
	}
	if version == "" || len(debs) != len(dc.pkgs) {
		return "", fmt.Errorf("apt-get download %s gave %v", pkgs, debs)
	}
	root := filepath.Join(tmp, "root")
	var names []string
	for _, d := range debs {
		if out, err := runWithTimeout(exec.Command(dpkg, "-x", d, root), time.Minute); err != nil {
			return "", fmt.Errorf("dpkg -x %s: %w\n%s", d, err, out)
		}
		names = append(names, filepath.Base(d))
	}
	if err := dc.fix(root); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "READY"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	final := filepath.Join(dc.dir, strings.ReplaceAll(version, "/", "_"))
	os.RemoveAll(final) // an incomplete earlier attempt
	if err := os.Rename(root, final); err != nil {
		return "", err
	}
	return final, nil
}
