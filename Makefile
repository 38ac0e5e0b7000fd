# mailmux: pmult, the milter multiplexer, and its tools.
#   make run    build and start pmult on the demo config with two example milters
#   make test   install what the tests need (Debian packages), vet, unit, fuzz (short), end-to-end
#   make bench  print the benchmark table (figures against a same-run baseline)
#   make fuzz   long fuzzing run (FUZZTIME per target: 10 M executions each by default)
#   make soak   bounded soak of the real binary against real backend processes (SOAKFLAGS)

GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN      := bin
FUZZTIME ?= 10000000x
SHORTFUZZ ?= 3s
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all build run test test-deps vet unit fuzz-short fuzz bench soak clean

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

# Bounded soak of the real binary (not part of make test): e.g.
# make soak SOAKFLAGS='-duration 10m -concurrency 500'
SOAKFLAGS ?=
soak: build
	$(GO) build -o $(BIN)/soak ./bench/soak
	$(BIN)/soak -pmult $(BIN)/pmult -demomilter $(BIN)/demomilter $(SOAKFLAGS)

clean:
	rm -rf $(BIN)
