// why.go: pmult why ID — the decision record of a recent message (queue
// id or session id) from the running pmult: over its control socket, or
// from its metrics listener's /why.

package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailmux/mailmux/config"
)

// whyTimeout bounds the request to the running pmult.
const whyTimeout = 10 * time.Second

// whyCmd exits 0 when the record was found, 1 when not, 69 (EX_UNAVAILABLE)
// when pmult could not be asked, 64 on bad usage, 78 on a bad configuration.
func whyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmult why", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var file, socket, metrics string
	fs.StringVar(&file, "c", "", "configuration `file`: where its control_socket or metrics_listen is")
	fs.StringVar(&file, "config", "", "configuration `file`")
	fs.StringVar(&socket, "socket", "", "the control socket `path` (overrides the configuration's control_socket)")
	fs.StringVar(&metrics, "metrics", "", "ask the metrics listener at `host:port` (/why?id=)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pmult why [-c FILE] [--socket PATH | --metrics HOST:PORT] QUEUEID|SESSION")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 64
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 64
	}
	id := fs.Arg(0)
	if file != "" && socket == "" && metrics == "" {
		cfg, err := config.Load(file)
		if err != nil {
			for _, e := range config.Errors(err) {
				fmt.Fprintln(stderr, e)
			}
			return exitConfig
		}
		socket, metrics = cfg.ControlSocket, cfg.MetricsListen
	}
	var out string
	var found bool
	var err error
	switch {
	case socket != "":
		out, err = askSocket(socket, id)
		found = err == nil && !strings.HasPrefix(out, "not found: ")
	case metrics != "":
		out, found, err = askMetrics(metrics, id)
	default:
		fmt.Fprintln(stderr, "pmult why: no control_socket or metrics_listen configured (use -c FILE, --socket or --metrics)")
		return 64
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmult why: %v\n", err)
		return 69
	}
	io.WriteString(stdout, out)
	if !found {
		return 1
	}
	return 0
}

func askSocket(path, id string) (string, error) {
	c, err := net.DialTimeout("unix", path, whyTimeout)
	if err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(whyTimeout))
	if _, err := fmt.Fprintf(c, "why %s\n", id); err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	return string(b), nil
}

func askMetrics(addr, id string) (string, bool, error) {
	if !strings.Contains(addr, ":") || strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1:" + strings.TrimPrefix(addr, ":") // a bare port: loopback, as pmult listens
	}
	cl := &http.Client{Timeout: whyTimeout}
	resp, err := cl.Get("http://" + addr + "/why?id=" + url.QueryEscape(id))
	if err != nil {
		return "", false, fmt.Errorf("metrics listener: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", false, fmt.Errorf("metrics listener: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return string(b), true, nil
	case http.StatusNotFound:
		return string(b), false, nil
	}
	return "", false, fmt.Errorf("metrics listener: %s: %s", resp.Status, strings.TrimSpace(string(b)))
}
