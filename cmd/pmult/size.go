// size.go: how pmult's message size limit (max_message) and its spool
// (spool_memory, spool_dir) relate to the MTA's limit, for `pmult check`
// and `pmult mta-config`.

package main

import (
	"fmt"
	"io"
	"os"

	"github.com/mailmux/mailmux/config"
)

// Default message size limits of the MTAs.
const (
	postfixMessageSizeLimit = 10240000 // message_size_limit
)

// checkSpool reports what `pmult check` says about sizes; false: an error
// (spool_dir is not a directory).
func checkSpool(cfg *config.Config, stdout, stderr io.Writer) bool {
	ok := true
	if cfg.SpoolDir != "" {
		if fi, err := os.Stat(cfg.SpoolDir); err != nil {
			fmt.Fprintf(stderr, "spool_dir: %v\n", err)
			ok = false
		} else if !fi.IsDir() {
			fmt.Fprintf(stderr, "spool_dir: %s is not a directory\n", cfg.SpoolDir)
			ok = false
		}
	}
	dir := cfg.SpoolDir
	if dir == "" {
		dir = os.TempDir()
	}
	if len(cfg.Smtp.ListenAddrs) > 0 {
		fmt.Fprintf(stdout, "[smtp] max_message = %d: the SMTP front announces it (SIZE) and answers bigger messages 552 5.3.4\n", cfg.Smtp.MaxMessage)
	}
	if len(cfg.Milter.ListenAddrs) == 0 && len(cfg.Meta1.ListenAddrs) == 0 {
		// No milter or MeTA1 front: the MTA-side notes below do not apply.
		if cfg.MaxMessage > 0 {
			fmt.Fprintf(stdout, "max_message = %d: bigger messages get 552 5.3.4 at end of data\n", cfg.MaxMessage)
		}
		return ok
	}
	if cfg.MaxMessage == 0 {
		fmt.Fprintf(stdout, "max_message = 0: no limit of pmult's, the MTA's applies (Postfix message_size_limit, default %d; Sendmail MaxMessageSize, unlimited by default: set one); messages replayed to later editors are kept in memory up to spool_memory = %d bytes, beyond in %s\n",
			postfixMessageSizeLimit, cfg.SpoolMemory, dir)
	} else {
		fmt.Fprintf(stdout, "max_message = %d: bigger messages get 552 5.3.4 at end of data; set the MTA's limit to at most this (Postfix message_size_limit, default %d; Sendmail MaxMessageSize) so that they are refused before DATA; beyond spool_memory = %d bytes messages are kept in %s\n",
			cfg.MaxMessage, postfixMessageSizeLimit, cfg.SpoolMemory, dir)
		if cfg.MaxMessage < postfixMessageSizeLimit {
			fmt.Fprintf(stdout, "note: max_message = %d is below Postfix's default message_size_limit (%d)\n", cfg.MaxMessage, postfixMessageSizeLimit)
		}
	}
	return ok
}

// sizeConfig prints the MTA's message size setting matching max_message.
func sizeConfig(mta string, cfg *config.Config, stdout io.Writer) {
	switch {
	case mta == "postfix" && cfg.MaxMessage > 0:
		fmt.Fprintf(stdout, "# pmult refuses messages over max_message (552 5.3.4): refuse them at MAIL SIZE= already\nmessage_size_limit = %d\n", cfg.MaxMessage)
	case mta == "postfix":
		fmt.Fprintf(stdout, "# pmult has no size limit (max_message = 0): message_size_limit (default %d) is the limit\n", postfixMessageSizeLimit)
	case cfg.MaxMessage > 0:
		fmt.Fprintf(stdout, "dnl pmult refuses messages over max_message (552 5.3.4): refuse them at MAIL SIZE= already\ndefine(`confMAX_MESSAGE_SIZE', `%d')dnl\n", cfg.MaxMessage)
	default:
		fmt.Fprintln(stdout, "dnl pmult has no size limit (max_message = 0) and Sendmail none by default: consider confMAX_MESSAGE_SIZE")
	}
}
