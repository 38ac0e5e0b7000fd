package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// TestFloorThroughPostfix: the benchmark's floors, mfloor (built with the
// C compiler) and gofloor, are working multiplexers for the benchmark's
// workload: in front of three real pymilter milters that each add a
// header, behind real Postfix, two SMTP sessions one after the other:
// both messages delivered with all three headers, each milter's
// connection opened once and kept (QUIT_NC) for the second session.
func TestFloorThroughPostfix(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "pymilter", "cc")
	dir := t.TempDir()
	mfloor := filepath.Join(dir, "mfloor")
	if out, err := exec.Command("cc", "-O2", "-Wall", "-Werror", "-pthread", "-o", mfloor, "../floor/mfloor.c").CombinedOutput(); err != nil {
		t.Fatalf("cc mfloor.c: %v\n%s", err, out)
	}
	gofloor := filepath.Join(dir, "gofloor")
	if out, err := exec.Command("go", "build", "-o", gofloor, "../floor/gofloor").CombinedOutput(); err != nil {
		t.Fatalf("go build gofloor: %v\n%s", err, out)
	}
	for _, bin := range []string{mfloor, gofloor} {
		t.Run(filepath.Base(bin), func(t *testing.T) { floorThroughPostfix(t, bin) })
	}
}

func floorThroughPostfix(t *testing.T, bin string) {
	sock := realpeer.Dir(t)
	var specs []string
	var logs []func() []string
	for i := 1; i <= 3; i++ {
		spec := "unix:" + filepath.Join(sock, fmt.Sprintf("py%d.sock", i))
		_, log := realpeer.StartPyMilterAt(t, spec, realpeer.PyPlan{EOMActions: []realpeer.PyAction{{Op: "addheader", Name: fmt.Sprintf("X-Bench-%d", i), Value: "seen"}}})
		specs = append(specs, spec)
		logs = append(logs, log)
	}
	listen := "unix:" + filepath.Join(sock, "mfloor.sock")
	p := realpeer.StartProcess(t, filepath.Base(bin), exec.Command(bin, append([]string{listen, "1"}, specs...)...))
	p.WaitReady(t, listen, 10*time.Second)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(listen)})
	for i := 0; i < 2; i++ {
		if out, err := pf.Send(t, "--to", fmt.Sprintf("r%d@example.com", i), "--header", "Subject: floor"); err != nil {
			t.Fatalf("send %d: %v\n%s", i, err, out)
		}
	}
	for _, d := range pf.WaitDelivered(t, 2, 30*time.Second) {
		for i := 1; i <= 3; i++ {
			if got := d.Header(fmt.Sprintf("X-Bench-%d", i)); got != "seen" {
				t.Errorf("%s: X-Bench-%d %q, want seen", d.Recipient, i, got)
			}
		}
	}
	for i, log := range logs {
		evs, err := realpeer.ParsePyEvents(log())
		if err != nil {
			t.Fatal(err)
		}
		// pymilter makes a new milter object (and conn number) per SMTP
		// session; a connection is negotiated once.
		negs, eoms := 0, 0
		for _, e := range evs {
			switch e.Stage {
			case "negotiate":
				negs++
			case "eom":
				eoms++
			}
		}
		if negs != 1 || eoms != 2 {
			t.Errorf("py%d: %d negotiations and %d messages, want 1 connection kept for both messages", i+1, negs, eoms)
		}
	}
}
