// config_test.go: tests of Parse, Load and Default: a complete file, the
// defaults, and bad files whose every error must be reported at once.

package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"

	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/config/syntax"
)

func TestLoadExample(t *testing.T) {
	// The same configuration in the new spellings and in the old ones.
	for _, file := range []string{"testdata/example.toml", "testdata/example-old.toml"} {
		cfg, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		checkExample(t, file, cfg)
	}
}

func checkExample(t *testing.T, file string, cfg *Config) {
	t.Helper()
	var old [][]string
	for _, b := range cfg.Backends {
		old = append(old, milterSettings(t, b).Old)
		milterSettings(t, b).Old = nil
	}
	var warnings []string
	for _, w := range cfg.Warnings {
		warnings = append(warnings, w.Error())
	}
	cfg.Warnings = nil
	wantWarnings := []string(nil)
	wantOld := [][]string{nil, nil}
	if strings.HasSuffix(file, "-old.toml") {
		wantWarnings = []string{
			file + `: max_sessions: old spelling: write max_connections in the [milter] table instead (the old spelling still loads)`,
			file + `: max_packet: old spelling: write max_packet in the [milter] table instead (the old spelling still loads)`,
			file + `: listen: old spelling: write listen in the [milter] table instead (the old spelling still loads)`,
			file + `: backend[0] "dkim": url: old spelling: write address instead (the old spelling still loads)`,
			file + `: backend[1] "spam": url: old spelling: write address instead (the old spelling still loads)`,
			file + `: backend[1] "spam": protocol: old spelling: write milter_version instead (the old spelling still loads)`,
		}
		wantOld = [][]string{{"url"}, {"url", "protocol"}}
	}
	if !slices.Equal(warnings, wantWarnings) {
		t.Errorf("%s: warnings:\n%s\nwant:\n%s", file, strings.Join(warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	if !reflect.DeepEqual(old, wantOld) {
		t.Errorf("%s: old spellings %q, want %q", file, old, wantOld)
	}
	want := &Config{
		Milter: Milter{
			Listen:         []string{"inet:127.0.0.1:7357", "unix:/run/pmult/pmult.sock"},
			MaxConnections: 0,
			MaxPacket:      1 << 20,
			DeferContent:   DeferContentAuto,
			ListenAddrs: []Address{
				{Network: "tcp", Addr: "127.0.0.1:7357", Raw: "inet:127.0.0.1:7357"},
				{Network: "unix", Addr: "/run/pmult/pmult.sock", Raw: "unix:/run/pmult/pmult.sock"},
			},
			ListenNames: []string{"", ""},
		},
		Macros:           Macros{Dialect: "auto"},
		PIDFile:          "/run/pmult/pmult.pid",
		MaxBackendPacket: 64 << 20,
		MaxMessage:       64 << 20,
		SpoolMemory:      1 << 20,
		MemoryBudget:     256 << 20,
		SpoolDir:         "/var/spool/pmult",
		ShutdownTimeout:  Duration{Duration: 30 * time.Second},
		NegotiateTimeout: Duration{Duration: 30 * time.Second},
		IdleTimeout:      Duration{Duration: time.Hour},
		WriteTimeout:     Duration{Duration: 30 * time.Second},
		Content:          "serial",
		OpenTimeout:      Duration{Duration: 10 * time.Second},
		ReadOnly:         "in_order",
		Merge:            "strongest",
		LogLevel:         "info",
		LogTag:           "pmult",
		DecisionLog:      true,
		DecisionRing:     DefaultDecisionRing,
		ProgressInterval: Duration{Duration: 5 * time.Second},
		SocketMode:       DefaultSocketMode,
		Backends: []Backend{{
			Name:      "dkim",
			Type:      "milter",
			OnFailure: "accept",
			Mode:      "enforce",
			Settings: &milter.Settings{
				Address:        "inet:8891@127.0.0.1",
				ConnectTimeout: Duration{Duration: 300 * time.Second},
				ReadTimeout:    Duration{Duration: 10 * time.Second},
				WriteTimeout:   Duration{Duration: 10 * time.Second},
				EOMTimeout:     Duration{Duration: 300 * time.Second},
				MilterVersion:  6,
				MaxBody:        64 << 20,
				Reuse:          true,
				Addr:           Address{Network: "tcp", Addr: "127.0.0.1:8891", Raw: "inet:8891@127.0.0.1"},
			},
		}, {
			Name:      "spam",
			Type:      "milter",
			OnFailure: "tempfail",
			Mode:      "evaluate",
			Settings: &milter.Settings{
				Address:        "unix:///run/spamass/spamass.sock",
				ConnectTimeout: Duration{Duration: 300 * time.Second},
				ReadTimeout:    Duration{Duration: 5 * time.Minute},
				WriteTimeout:   Duration{Duration: 30 * time.Second},
				EOMTimeout:     Duration{Duration: 2*time.Hour + 35*time.Second},
				MilterVersion:  6,
				MaxBody:        64 << 20,
				Reuse:          true,
				Addr:           Address{Network: "unix", Addr: "/run/spamass/spamass.sock", Raw: "unix:///run/spamass/spamass.sock"},
			},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(%s) =\n%+v\nwant\n%+v", file, cfg, want)
	}
}

// milterSettings returns the settings of a milter backend.
func milterSettings(t *testing.T, b Backend) *milter.Settings {
	t.Helper()
	s, ok := b.Settings.(*milter.Settings)
	if !ok {
		t.Fatalf("backend %q: settings %T, want *milter.Settings", b.Name, b.Settings)
	}
	return s
}

// TestDocExample keeps the example in doc.go and testdata/example.toml the
// same.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var fromDoc []string
	for line := range strings.Lines(string(doc)) {
		if s, ok := strings.CutPrefix(line, "//\t"); ok {
			fromDoc = append(fromDoc, strings.TrimSpace(s))
		}
	}
	ex, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var fromFile []string
	for line := range strings.Lines(string(ex)) {
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
			fromFile = append(fromFile, s)
		}
	}
	if !slices.Equal(fromDoc, fromFile) {
		t.Errorf("doc.go example and testdata/example.toml differ:\n%s\n---\n%s",
			strings.Join(fromDoc, "\n"), strings.Join(fromFile, "\n"))
	}
}

func TestDefaults(t *testing.T) {
	for name, cfg := range map[string]*Config{"Default": Default(), "Parse(empty)": mustParse(t, "")} {
		m := cfg.Milter
		if !slices.Equal(m.Listen, []string{"inet:127.0.0.1:7357"}) ||
			len(m.ListenAddrs) != 1 || m.ListenAddrs[0].Network != "tcp" || m.ListenAddrs[0].Addr != "127.0.0.1:7357" {
			t.Errorf("%s: listen %v %v", name, m.Listen, m.ListenAddrs)
		}
		if m.DeferContent != DeferContentAuto {
			t.Errorf("%s: milter.defer_content %v, want auto by default", name, m.DeferContent)
		}
		if m.MaxPacket != DefaultMaxPacket || cfg.MaxBackendPacket != DefaultMaxBackendPacket ||
			cfg.MaxMessage != 0 || m.MaxConnections != 0 ||
			cfg.SpoolMemory != 1<<20 || cfg.MemoryBudget != 256<<20 || cfg.SpoolDir != "" ||
			cfg.ShutdownTimeout.Duration != 30*time.Second || cfg.Content != "serial" ||
			cfg.LogLevel != "info" || cfg.LogTag != "pmult" || cfg.PIDFile != "" || len(cfg.Backends) != 0 {
			t.Errorf("%s: %+v", name, cfg)
		}
	}
	cfg := mustParse(t, `
listen = "unix:/tmp/p.sock"
content = "PARALLEL"
log_level = "Warn"
[[backend]]
name = "a"
url = "inet:1@localhost"
on_failure = "Reject"
`)
	b, ms := cfg.Backends[0], milterSettings(t, cfg.Backends[0])
	if ms.ConnectTimeout.Duration != 300*time.Second || ms.ReadTimeout.Duration != 10*time.Second ||
		ms.WriteTimeout.Duration != 10*time.Second || ms.EOMTimeout.Duration != 300*time.Second ||
		b.OnFailure != "reject" || b.Mode != "enforce" || ms.MilterVersion != 6 || b.Type != "milter" ||
		ms.Addr.Network != "tcp" || ms.Addr.Addr != "localhost:1" {
		t.Errorf("backend defaults: %+v %+v", b, ms)
	}
	if cfg.Content != "parallel" || cfg.LogLevel != "warn" || cfg.Milter.ListenAddrs[0].Addr != "/tmp/p.sock" {
		t.Errorf("config: %+v", cfg)
	}
}

// The engine's keys: defaults, values, and every bad value reported.
func TestEngineKeys(t *testing.T) {
	cfg := Default()
	if cfg.OpenTimeout.Duration != 10*time.Second || cfg.ReadOnly != "in_order" || cfg.Merge != "strongest" {
		t.Errorf("defaults: open_timeout %s read_only %q merge %q", cfg.OpenTimeout, cfg.ReadOnly, cfg.Merge)
	}
	cfg = mustParse(t, "open_timeout = \"3s\"\nread_only = \"Live\"\nmerge = \"chain\"\n")
	if cfg.OpenTimeout.Duration != 3*time.Second || cfg.ReadOnly != "live" || cfg.Merge != "chain" {
		t.Errorf("parsed: open_timeout %s read_only %q merge %q", cfg.OpenTimeout, cfg.ReadOnly, cfg.Merge)
	}
	e, err := cfg.Engine(nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.OpenTimeout != 3*time.Second || !e.ReadOnlyLive || !e.ChainMerge {
		t.Errorf("engine: %+v", e)
	}
	got := parseErrors(t, "open_timeout = \"0s\"\nread_only = \"late\"\nmerge = \"first\"\n")
	want := []string{
		`config.toml: open_timeout: must be positive (leave it out for the default, 10s)`,
		`config.toml: read_only: unknown read-only mode "late" (want in_order or live)`,
		`config.toml: merge: unknown merge mode "first" (want strongest or chain)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(doc), "test.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// parseErrors parses doc, which must fail, and returns its error messages.
func parseErrors(t *testing.T, doc string) []string {
	t.Helper()
	cfg, err := Parse([]byte(doc), "config.toml")
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", cfg)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config with its error")
	}
	var me *multierror.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %T is not a *multierror.Error", err)
	}
	var msgs []string
	for _, e := range Errors(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Errorf("error %T %q is not a *FieldError", e, e)
		}
		msgs = append(msgs, e.Error())
	}
	return msgs
}

func TestBadFileReportsEverything(t *testing.T) {
	const doc = `
listen = []
max_packet = 1000
content = "sideways"
log_level = "loud"
shutdown_timeout = "0s"
max_sessions = -1
lsten = "inet:1@localhost"

[[backend]]
name = "dkim"
url = "inet:abc"
read_timeout = "soon"
write_timeout = -5
eom_timeout = 0

[[backend]]
name = "dkim"
url = "unix:/run/x.sock"
on_failure = "acept"
mode = "shadow"
protocol = 9
nmae = "x"

[[backend]]
connect_timeout = 1.5
`
	got := parseErrors(t, doc)
	want := []string{
		`config.toml: unknown key "lsten" (did you mean "listen"?)`,
		`config.toml: backend[1] "dkim": unknown key "backend.nmae" (did you mean "name"?)`,
		`config.toml: max_sessions: -1 is too small (minimum 0)`,
		`config.toml: max_packet: 1000 is too small (minimum 65536)`,
		`config.toml: shutdown_timeout: must be positive (leave it out for the default, 30s)`,
		`config.toml: content: unknown content mode "sideways" (want serial or parallel)`,
		`config.toml: log_level: unknown level "loud" (want debug, info, warn or error)`,
		`config.toml: listen: no listen address (leave the key out for the default, inet:127.0.0.1:7357)`,
		`config.toml: backend[0] "dkim": read_timeout: duration "soon": expected a number at "soon" (want e.g. "10s", "300" or "2 hours 35 seconds")`,
		`config.toml: backend[0] "dkim": write_timeout: duration "-5": negative durations are not allowed`,
		`config.toml: backend[0] "dkim": eom_timeout: must be positive (leave it out for the default, 5m0s)`,
		`config.toml: backend[0] "dkim": url: address "inet:abc": bad port "abc" (not a number nor a known service name)`,
		`config.toml: backend[1] "dkim": on_failure: unknown action "acept" (want accept, tempfail, reject or discard)`,
		`config.toml: backend[1] "dkim": mode: unknown mode "shadow" (want enforce or evaluate)`,
		`config.toml: backend[1] "dkim": protocol: 9 is out of range (want 2 to 6)`,
		`config.toml: backend[1] "dkim": name: duplicate: backend[0] has the same name`,
		`config.toml: backend[2]: connect_timeout: duration: want a string such as "10s" or "2 hours 35 seconds", or an integer number of seconds, not a TOML float`,
		`config.toml: backend[2]: name: missing (every backend needs a unique name)`,
		`config.toml: backend[2]: address: missing (the milter's socket, e.g. inet:127.0.0.1:8891 or unix:/run/milter.sock; old spelling: url)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %d errors:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	_, err := Parse([]byte(doc), "config.toml")
	if !strings.HasPrefix(err.Error(), "19 configuration errors:\n\tconfig.toml: unknown key") {
		t.Errorf("combined message: %q", err)
	}
}

func TestWrongTypes(t *testing.T) {
	got := parseErrors(t, `
listen = ["inet:1@localhost", 7, "inet:1@localhost", "inet::1"]
pidfile = 1
max_packet = "big"
log_tag = ["x"]
content = true
[[backend]]
name = 5
url = 5
protocol = "6"
`)
	want := []string{
		`config.toml: pidfile: want a string, not a TOML integer`,
		`config.toml: max_packet: want an integer, not a TOML string`,
		`config.toml: content: want a string, not a TOML boolean`,
		`config.toml: log_tag: want a string, not a TOML array`,
		`config.toml: listen[1]: want a string, not a TOML integer`,
		`config.toml: listen[2]: address "inet:1@localhost": same as listen[0]`,
		`config.toml: backend[0]: name: want a string, not a TOML integer`,
		`config.toml: backend[0]: url: want a string, not a TOML integer`,
		`config.toml: backend[0]: protocol: want an integer, not a TOML string`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUnknownKeys(t *testing.T) {
	got := parseErrors(t, `
pid_file = "/run/p.pid"
read-timeout = "1s"
zzz = 1
[logging]
facility = "mail"

[[backend]]
name = "a"
url = "inet:1@localhost"
read-timeout = "5s"
[backend.extra]
x = 1

[[backend]]
name = "b"
url = "inet:2@localhost"
read-timeout = "5s"
`)
	want := []string{
		`config.toml: unknown key "pid_file" (did you mean "pidfile"?)`,
		`config.toml: unknown key "read-timeout"`,
		`config.toml: unknown key "zzz"`,
		`config.toml: unknown key "logging"`,
		`config.toml: backend[0] "a": unknown key "backend.read-timeout" (did you mean "read_timeout"?)`,
		`config.toml: backend[1] "b": unknown key "backend.read-timeout" (did you mean "read_timeout"?)`,
		`config.toml: backend[0] "a": unknown key "backend.extra"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSyntaxError(t *testing.T) {
	got := parseErrors(t, "listen = \"inet:1@localhost\"\n\n[[backend]]\nname = = \"a\"\nurl = \"x\"\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "config.toml:4: ") {
		t.Errorf("got %q, want one error on line 4", got)
	}
	_, err := Parse([]byte("a = 1\nb = = 2\n"), "x.toml")
	var pe toml.ParseError
	if !errors.As(err, &pe) || pe.Position.Line != 2 {
		t.Errorf("error %v does not unwrap to a toml.ParseError on line 2", err)
	}
	// A single [backend] table instead of an array of tables.
	got = parseErrors(t, "[backend]\nname = \"a\"\nurl = \"inet:1@localhost\"\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "config.toml:1: backend: must be an array of tables: write [[backend]]") {
		t.Errorf("got %q", got)
	}
	got = parseErrors(t, "backend = 5\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "config.toml:1: backend: must be an array of tables") {
		t.Errorf("got %q", got)
	}
}

func TestSpoolKeys(t *testing.T) {
	cfg := mustParse(t, "max_message = 0\nspool_memory = 0\nmemory_budget = 0\n")
	if cfg.MaxMessage != 0 || cfg.SpoolMemory != 0 || cfg.MemoryBudget != 0 {
		t.Errorf("zeroes: %+v", cfg)
	}
	e, err := cfg.Engine(nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.MaxMessage != 0 || e.SpoolMemory >= 0 || e.MemoryBudget >= 0 {
		t.Errorf("engine: max %d, spool memory %d, budget %d: want 0 (no limit) and none in memory",
			e.MaxMessage, e.SpoolMemory, e.MemoryBudget)
	}
	cfg = mustParse(t, "max_message = 20971520\nspool_memory = 65536\nmemory_budget = 1048576\nspool_dir = \"/var/tmp\"\n")
	if e, _ = cfg.Engine(nil); e.MaxMessage != 20<<20 || e.SpoolMemory != 65536 || e.MemoryBudget != 1<<20 || e.SpoolDir != "/var/tmp" {
		t.Errorf("engine: %+v", e)
	}
	got := parseErrors(t, "max_message = 1000\nspool_memory = -1\nmemory_budget = \"1M\"\nspool_dir = \"spool\"\n")
	want := []string{
		`config.toml: max_message: 1000 is too small (minimum 65536, or 0 for no limit)`,
		`config.toml: memory_budget: want an integer, not a TOML string`,
		`config.toml: spool_dir: "spool" is not an absolute path`,
		`config.toml: spool_memory: -1 is too small (minimum 0)`,
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestExplicitZeroes(t *testing.T) {
	// max_sessions = 0 and max_message = 0 are "no limit", spool_memory =
	// 0 and memory_budget = 0 "nothing in memory"; a zero anywhere else is
	// an error, not a request for the default.
	got := parseErrors(t, `
max_sessions = 0
max_packet = 0
max_backend_packet = 0
max_message = 0
spool_memory = 0
memory_budget = 0
shutdown_timeout = 0
[[backend]]
name = "a"
url = "inet:0@localhost"
connect_timeout = "0"
protocol = 0
`)
	want := []string{
		`config.toml: max_packet: 0 is too small (minimum 65536)`,
		`config.toml: max_backend_packet: 0 is too small (minimum 65536)`,
		`config.toml: shutdown_timeout: must be positive (leave it out for the default, 30s)`,
		`config.toml: backend[0] "a": connect_timeout: must be positive (leave it out for the default, 5m0s)`,
		`config.toml: backend[0] "a": protocol: 0 is out of range (want 2 to 6)`,
		`config.toml: backend[0] "a": url: address "inet:0@localhost": port 0 cannot be connected to`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	errs := Errors(err)
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) || !strings.HasPrefix(errs[0].Error(), "config: open ") {
		t.Errorf("Errors = %v", errs)
	}
}

func TestErrors(t *testing.T) {
	if Errors(nil) != nil {
		t.Error("Errors(nil) != nil")
	}
	e := errors.New("x")
	if got := Errors(e); len(got) != 1 || got[0] != e {
		t.Errorf("Errors(plain) = %v", got)
	}
}

func TestFieldError(t *testing.T) {
	e := &FieldError{Source: "f.toml", Backend: 1, Name: "dkim", Field: "on_failure", Err: errors.New("bad")}
	if e.Error() != `f.toml: backend[1] "dkim": on_failure: bad` {
		t.Errorf("%q", e.Error())
	}
	if !errors.Is(e, e.Err) {
		t.Error("Unwrap")
	}
}

// TestSchemaKeys checks that the keys decoded are those of Config, Milter
// and Backend, plus the old spellings.
func TestSchemaKeys(t *testing.T) {
	a := tomlKeys(Config{})
	for old := range renamed() {
		a = append(a, old)
	}
	b := tomlKeys(rawConfig{})
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Errorf("Config keys and old spellings %v, rawConfig keys %v", a, b)
	}
	if a, b := tomlKeys(Milter{}), tomlKeys(rawMilter{}); !slices.Equal(a, b) {
		t.Errorf("Milter keys %v, rawMilter keys %v", a, b)
	}
	if a, b := tomlKeys(Backend{}), tomlKeys(rawBackend{}); !slices.Equal(a, b) {
		t.Errorf("Backend keys %v, rawBackend keys %v", a, b)
	}
	for old, key := range renamed() {
		if _, k, _ := strings.Cut(key, "."); !slices.Contains(tomlKeys(rawMilter{}), k) {
			t.Errorf("old spelling %s: %s is no key", old, key)
		}
	}
}

func TestSuggest(t *testing.T) {
	k, _ := backendKind(TypeMilter)
	keys := append(tomlKeys(rawBackend{}), k.keys...)
	for in, want := range map[string]string{
		"nmae": "name", "URL": "url", "eom-timeout": "eom_timeout", "onfailure": "on_failure",
		"protocl": "protocol", "x": "", "colour": "", "": "",
		"adress": "address", "milter-version": "milter_version", "tpye": "type",
	} {
		if got := syntax.Suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	ex, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(ex))
	f.Add("listen = []\n[[backend]]\nnmae = 1\n")
	f.Add("[backend]\nx = 1\n")
	f.Add("backend = [{name = \"a\", url = \"inet:1@h\", read_timeout = 1.5}]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse([]byte(doc), "fuzz.toml")
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v", cfg, err)
		}
		for _, e := range Errors(err) {
			if !strings.HasPrefix(e.Error(), "fuzz.toml") {
				t.Fatalf("error %q does not name the file", e)
			}
		}
	})
}

// TestDecisionKeys: decision_log defaults to true, decision_ring to
// DefaultDecisionRing; control_socket must be absolute; bad values are
// reported together.
func TestDecisionKeys(t *testing.T) {
	cfg, err := Parse([]byte("decision_log = false\ndecision_ring = 5\ncontrol_socket = \"/run/pmult/control.sock\"\n"), "t")
	if err != nil || cfg.DecisionLog || cfg.DecisionRing != 5 || cfg.ControlSocket != "/run/pmult/control.sock" {
		t.Fatalf("cfg %+v err %v", cfg, err)
	}
	_, err = Parse([]byte("decision_log = \"yes\"\ndecision_ring = -1\ncontrol_socket = \"control.sock\"\n"), "t")
	if n := len(Errors(err)); n != 3 {
		t.Errorf("want 3 errors, got %d: %v", n, err)
	}
}

// TestMetricsPprofKey: metrics_pprof defaults to false, needs
// metrics_listen, and must be a boolean.
func TestMetricsPprofKey(t *testing.T) {
	cfg, err := Parse([]byte("metrics_listen = \"9100\"\n"), "t")
	if err != nil || cfg.MetricsPprof {
		t.Fatalf("default: cfg.MetricsPprof %v err %v", cfg.MetricsPprof, err)
	}
	cfg, err = Parse([]byte("metrics_listen = \"9100\"\nmetrics_pprof = true\n"), "t")
	if err != nil || !cfg.MetricsPprof {
		t.Fatalf("on: cfg.MetricsPprof %v err %v", cfg.MetricsPprof, err)
	}
	_, err = Parse([]byte("metrics_pprof = true\n"), "t")
	if err == nil || !strings.Contains(err.Error(), "metrics_pprof") {
		t.Errorf("without metrics_listen: err %v, want one naming metrics_pprof", err)
	}
	_, err = Parse([]byte("metrics_listen = \"9100\"\nmetrics_pprof = \"yes\"\n"), "t")
	if n := len(Errors(err)); n != 1 {
		t.Errorf("metrics_pprof = \"yes\": want 1 error, got %d: %v", n, err)
	}
}

// [milter] defer_content: "auto" by default, true, false or "auto" when
// set so, and anything else is an error naming the key.
func TestMilterDeferContent(t *testing.T) {
	for _, tc := range []struct {
		text string
		want DeferContent
	}{{"", DeferContentAuto}, {"[milter]\ndefer_content = true\n", DeferContentOn},
		{"[milter]\ndefer_content = false\n", DeferContentOff}, {"[milter]\ndefer_content = \"Auto\"\n", DeferContentAuto}} {
		cfg, err := Parse([]byte(tc.text), "t.toml")
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if cfg.Milter.DeferContent != tc.want {
			t.Errorf("%q: defer_content %v, want %v", tc.text, cfg.Milter.DeferContent, tc.want)
		}
	}
	if _, err := Parse([]byte("[milter]\ndefer_content = \"yes\"\n"), "t.toml"); err == nil || !strings.Contains(err.Error(), "milter.defer_content") {
		t.Errorf("defer_content = \"yes\": %v, want an error naming milter.defer_content", err)
	}
}
