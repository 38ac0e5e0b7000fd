// redis.go: runs a private redis-server (free port on 127.0.0.1, its own
// directory, no persistence), stopped by PID in t.Cleanup.

package realpeer

import (
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// StartRedis starts redis-server on a free port of 127.0.0.1 with its
// working directory in a private Dir and persistence off, waits until it
// listens, and returns its "127.0.0.1:PORT" address. It is stopped in
// t.Cleanup; its output is logged when the test failed.
func StartRedis(t testing.TB) string {
	t.Helper()
	Require(t, "redis-server")
	bin := mustTool(t, "redis-server")
	dir := Dir(t)
	port := strconv.Itoa(FreePort(t))
	cmd := exec.Command(bin,
		"--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "no", "--loglevel", "warning")
	cmd.Dir = dir
	p := StartProcess(t, "redis-server", cmd)
	addr := "127.0.0.1:" + port
	p.WaitReady(t, "tcp:"+addr, 10*time.Second)
	return addr
}
