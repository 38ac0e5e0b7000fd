// opendkim.go: runs OpenDKIM as a signing and/or verifying backend milter
// without DNS: a key pair from opendkim-genkey, the verifier reading the
// public key from a TestPublicKeys file.

package realpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DKIMKey is a key pair made by GenerateDKIMKey, shared by a signer and a
// verifier of the same test.
type DKIMKey struct {
	Domain   string // d= of the signature
	Selector string // s= of the signature
	// PrivateFile is the PEM private key (owned by user opendkim, mode
	// 0600, as opendkim's RequireSafeKeys wants).
	PrivateFile string
	// Record is the public key's TXT record on one line
	// ("v=DKIM1; h=sha256; k=rsa; p=…").
	Record string
	// TestKeysFile is a TestPublicKeys file with one line
	// "SELECTOR._domainkey.DOMAIN RECORD".
	TestKeysFile string
}

// OpenDKIMOptions configures StartOpenDKIM.
type OpenDKIMOptions struct {
	// Mode is opendkim's Mode: "s" (sign), "v" (verify) or "sv"; default "s".
	Mode string
	// Domain and Selector name the signing key; defaults: Key's, else
	// "example.org" and "test". They must match Key when both are given.
	Domain, Selector string
	// Key is the key pair; nil: a fresh one from GenerateDKIMKey. Give the
	// signer and the verifier the same key.
	Key *DKIMKey
	// InternalHosts is the signer's InternalHosts (mail from there is
	// signed); default 127.0.0.1. Give another address to make the
	// signing depend on Extra's MacroList only.
	InternalHosts string
	// Extra are more opendkim.conf lines (e.g. "MacroList daemon_name=ORIGINATING").
	Extra string
}

// recordRE picks the quoted strings of opendkim-genkey's zone file line.
var recordRE = regexp.MustCompile(`"([^"]*)"`)

// GenerateDKIMKey runs "opendkim-genkey -b 1024 -d domain -s selector" in
// a private Dir (call it once per test and share the key: the signer signs
// with it, the verifier reads its public half from TestKeysFile). Empty
// domain and selector default to "example.org" and "test".
func GenerateDKIMKey(t testing.TB, domain, selector string) *DKIMKey {
	t.Helper()
	Require(t, "opendkim-genkey")
	if domain == "" {
		domain = "example.org"
	}
	if selector == "" {
		selector = "test"
	}
	dir := Dir(t)
	r := runCmd(30*time.Second, "", mustTool(t, "opendkim-genkey"),
		"-b", "1024", "-d", domain, "-s", selector, "-D", dir)
	if r.err != nil {
		t.Fatalf("realpeer: opendkim-genkey: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	txt, err := os.ReadFile(filepath.Join(dir, selector+".txt"))
	if err != nil {
		t.Fatalf("realpeer: opendkim-genkey: %v", err)
	}
	// `sel._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; " "p=…" ) ; comment`
	var rec strings.Builder
	for _, m := range recordRE.FindAllStringSubmatch(string(txt), -1) {
		rec.WriteString(m[1])
	}
	if !strings.Contains(rec.String(), "p=") {
		t.Fatalf("realpeer: opendkim-genkey: no public key in %s:\n%s", selector+".txt", txt)
	}
	k := &DKIMKey{
		Domain:       domain,
		Selector:     selector,
		PrivateFile:  filepath.Join(dir, selector+".private"),
		Record:       strings.TrimSpace(rec.String()),
		TestKeysFile: filepath.Join(dir, "test-public-keys"),
	}
	line := selector + "._domainkey." + domain + " " + k.Record + "\n"
	if err := os.WriteFile(k.TestKeysFile, []byte(line), 0o644); err != nil {
		t.Fatalf("realpeer: opendkim: %v", err)
	}
	chownUser(t, k.PrivateFile, "opendkim")
	if err := os.Chmod(k.PrivateFile, 0o600); err != nil {
		t.Fatalf("realpeer: opendkim: %v", err)
	}
	return k
}

// StartOpenDKIM runs "opendkim -f -x CONFIG" (foreground, its own
// configuration file in a private Dir owned by user opendkim, to which it
// drops privileges) on a free port of 127.0.0.1, waits until it listens,
// and returns its libmilter spec "inet:PORT@127.0.0.1" (for Postfix use
// PostfixMilter(spec)). The configuration: Canonicalization
// relaxed/relaxed, Syslog no (opendkim then logs nothing), RequireSafeKeys
// false (the files are under the world-writable temp directory), no DNS:
//
//   - "s": Domain, Selector and KeyFile from the key; InternalHosts
//     127.0.0.1, so mail from 127.0.0.1 with a From: address in Domain is
//     signed.
//   - "v": TestPublicKeys is the key's TestKeysFile; InternalHosts names
//     192.0.2.1 only, so mail from 127.0.0.1 counts as external and is
//     verified; AlwaysAddARHeader yes (unsigned mail gets dkim=none);
//     AuthservID "verifier.test".
//   - "sv": both; InternalHosts 127.0.0.1, so mail from 127.0.0.1 is
//     signed, not verified.
//
// opendkim answers ACCEPT at end of message. It is killed (SIGKILL to
// its PID) in t.Cleanup; its (scant) output and the configuration are
// logged when the test failed.
func StartOpenDKIM(t testing.TB, opt OpenDKIMOptions) (spec string) {
	t.Helper()
	Require(t, "opendkim")
	mode := opt.Mode
	if mode == "" {
		mode = "s"
	}
	sign, verify := strings.Contains(mode, "s"), strings.Contains(mode, "v")
	if !sign && !verify || strings.Trim(mode, "sv") != "" {
		t.Fatalf("realpeer: StartOpenDKIM: Mode %q (want s, v or sv)", opt.Mode)
	}
	key := opt.Key
	if key == nil {
		key = GenerateDKIMKey(t, opt.Domain, opt.Selector)
	}
	if opt.Domain != "" && opt.Domain != key.Domain || opt.Selector != "" && opt.Selector != key.Selector {
		t.Fatalf("realpeer: StartOpenDKIM: Domain/Selector %q/%q do not match the key's %q/%q",
			opt.Domain, opt.Selector, key.Domain, key.Selector)
	}
	bin := mustTool(t, "opendkim")
	dir := Dir(t)
	chownUser(t, dir, "opendkim")
	spec = "inet:" + strconv.Itoa(FreePort(t)) + "@127.0.0.1"

	var c strings.Builder
	fmt.Fprintf(&c, "# written by realpeer.StartOpenDKIM\n")
	fmt.Fprintf(&c, "Mode %s\nSocket %s\nUserID opendkim\nSyslog no\n", mode, spec)
	fmt.Fprintf(&c, "PidFile %s\n", filepath.Join(dir, "opendkim.pid"))
	fmt.Fprintf(&c, "Canonicalization relaxed/relaxed\n")
	// With RequireSafeKeys (the default) opendkim refuses a configuration
	// file below a world-writable directory such as /tmp ("/tmp can be
	// read or written by other users"), and Dir lives there.
	fmt.Fprintf(&c, "RequireSafeKeys false\n")
	if sign {
		internal := opt.InternalHosts
		if internal == "" {
			internal = "127.0.0.1"
		}
		fmt.Fprintf(&c, "Domain %s\nSelector %s\nKeyFile %s\nInternalHosts %s\n",
			key.Domain, key.Selector, key.PrivateFile, internal)
	} else {
		// Anything but 127.0.0.1: mail from there is then external.
		fmt.Fprintf(&c, "InternalHosts 192.0.2.1\n")
	}
	if verify {
		fmt.Fprintf(&c, "TestPublicKeys %s\nAlwaysAddARHeader yes\nAuthservID verifier.test\n", key.TestKeysFile)
	}
	c.WriteString(opt.Extra)
	if opt.Extra != "" && !strings.HasSuffix(opt.Extra, "\n") {
		c.WriteString("\n")
	}
	conf := filepath.Join(dir, "opendkim.conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o644); err != nil {
		t.Fatalf("realpeer: opendkim: %v", err)
	}
	cmd := exec.Command(bin, "-f", "-x", conf)
	cmd.Dir = dir
	p := StartProcess(t, "opendkim -"+mode, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realpeer: opendkim.conf (mode %s):\n%s", mode, c.String())
		}
	})
	// libmilter notices SIGTERM only after its listener's poll timeout
	// (3.4 s seen), and Process.Stop would wait 3 s and then kill anyway:
	// opendkim keeps no state worth a clean exit, so kill its PID at once
	// (this cleanup runs before StartProcess's, which then finds it gone).
	t.Cleanup(func() {
		if p.Running() {
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
		}
	})
	p.WaitReady(t, spec, 20*time.Second)
	return spec
}
