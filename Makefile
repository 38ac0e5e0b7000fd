# mailmux: pmult, the milter multiplexer, and its tools.
#   make run    build and start pmult on the demo config with two example milters
#   make test   install what the tests need (Debian packages), vet, unit, fuzz (short), end-to-end
#   make bench  print the benchmark table (figures against a same-run baseline)
#   make bench-postfix  pmult against Postfix's own milter chain through real Postfix (BENCHFLAGS; root)
#   make fuzz   long fuzzing run (FUZZTIME per target: 10 M executions each by default)
#   make soak   bounded soak of the real binary against real backend processes (SOAKFLAGS)
#   make install  binaries, systemd units, man pages, example configuration (PREFIX, DESTDIR)
#   make deb      the Debian package bin/mailmux_VERSION_ARCH.deb, built offline (dpkg-deb)

GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN      := bin
FUZZTIME ?= 10000000x
SHORTFUZZ ?= 3s
export PATH := $(dir $(GO)):$(PATH)

# Installation (make install PREFIX=/usr DESTDIR=/tmp/root): the units
# and man pages are rewritten for SBINDIR and SYSCONFDIR; an existing
# $(SYSCONFDIR)/pmult/pmult.toml or calloutd.toml is never overwritten.
PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
INSTALL    ?= install

.PHONY: all build run test test-deps vet unit fuzz-short fuzz bench bench-postfix soak clean install deb systemd-smoke

all: build

build:
	$(GO) build -o $(BIN)/pmult ./cmd/pmult
	$(GO) build -o $(BIN)/demomilter ./examples/demomilter
	$(GO) build -o $(BIN)/mtasim ./cmd/mtasim
	$(GO) build -o $(BIN)/calloutd ./cmd/calloutd

run: build
	./scripts/run-demo.sh

test-deps:
	./scripts/install-test-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

# Every fuzz target for a short, bounded time (the long run is make fuzz).
fuzz-short:
	./scripts/fuzz.sh $(SHORTFUZZ)

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

test: test-deps vet unit fuzz-short

bench:
	$(GO) build -o $(BIN)/benchtable ./bench/benchtable
	$(BIN)/benchtable

# pmult through real Postfix against Postfix's own smtpd_milters chain of
# the same real milters (see bench/postfix): e.g.
# make bench-postfix BENCHFLAGS='-messages 2000 -runs 5 -cpuprofile /tmp/prof'
# make bench-postfix BENCHFLAGS='-phases unix -runs 7 -pmult-base /tmp/pmult-old' (two builds, run by run)
# The floor rows (bench/floor: mfloor.c and gofloor, the least a
# multiplexer can spend, in C and in Go); mfloor needs a C compiler,
# without one its rows are left out.
BENCHFLAGS ?=
CC ?= cc
bench-postfix: build
	$(GO) build -o $(BIN)/bench-postfix ./bench/postfix
	$(GO) build -o $(BIN)/gofloor ./bench/floor/gofloor
	@if command -v $(CC) >/dev/null 2>&1; then \
		$(CC) -O2 -Wall -pthread -o $(BIN)/mfloor bench/floor/mfloor.c && floor="-floor $(BIN)/mfloor"; \
	else \
		echo "bench-postfix: no C compiler ($(CC)): the floor rows are left out (apt-get install gcc libc6-dev)" >&2; floor=""; \
	fi; \
	$(BIN)/bench-postfix -pmult $(BIN)/pmult -gofloor $(BIN)/gofloor $$floor $(BENCHFLAGS)

# Bounded soak of the real binary (not part of make test): e.g.
# make soak SOAKFLAGS='-duration 10m -concurrency 500'
SOAKFLAGS ?=
soak: build
	$(GO) build -o $(BIN)/soak ./bench/soak
	$(BIN)/soak -pmult $(BIN)/pmult -demomilter $(BIN)/demomilter $(SOAKFLAGS)

install: build
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/pmult
	$(INSTALL) -m 0755 $(BIN)/pmult $(BIN)/calloutd $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0755 $(BIN)/mtasim $(DESTDIR)$(BINDIR)/
	for f in dist/man/*.8 dist/man/*.1 dist/systemd/*.service; do \
		case $$f in *.8) d=$(MANDIR)/man8;; *.1) d=$(MANDIR)/man1;; *) d=$(UNITDIR);; esac; \
		sed -e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|/etc/pmult/|$(SYSCONFDIR)/pmult/|g' $$f > $(DESTDIR)$$d/$${f##*/}.tmp && \
		chmod 0644 $(DESTDIR)$$d/$${f##*/}.tmp && mv $(DESTDIR)$$d/$${f##*/}.tmp $(DESTDIR)$$d/$${f##*/} || exit 1; \
	done
	for f in pmult.toml calloutd.toml; do \
		test -e $(DESTDIR)$(SYSCONFDIR)/pmult/$$f || $(INSTALL) -m 0644 dist/$$f $(DESTDIR)$(SYSCONFDIR)/pmult/$$f || exit 1; \
	done

# The Debian package, from the tree and the module cache (GOPROXY=off:
# no network); see scripts/build-deb.sh.
deb:
	GO=$(GO) ./scripts/build-deb.sh $(BIN)

# The .deb under a real systemd: a throwaway systemd-nspawn container on a
# copy-on-write overlay of this machine (root, systemd-container; not part
# of make test): install, start and reload pmult.service and calloutd.service.
systemd-smoke:
	GO=$(GO) ./scripts/systemd-smoke.sh

clean:
	rm -rf $(BIN)
