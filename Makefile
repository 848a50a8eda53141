# Portcullis — the two commands a newcomer needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/portcullis
PKGS      := ./...
TEST_TIMEOUT ?= 40m

.PHONY: all build demo test check vet fmt-check unit e2e bench fuzz setup clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/portcullis

# Runs the whole product on 127.0.0.1 and prints what to open.
demo: build
	./$(BIN) demo

setup:
	./e2e/setup.sh

# Installs what is missing, then vet, gofmt and every test with the race detector.
# The race detector shrinks the audit verify test to 100,000 records; the
# full 1,000,000-record trail is then verified without it (~2 s).
test: setup check
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	$(GO) test -count=1 -run '^TestVerifyMillion$$' -v ./authz/audit/

check: vet fmt-check

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/idp/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks against real peers (nginx, OpenSSH); prints a table and writes BENCH_OUT.
bench: build
	WITH_BENCH=1 ./e2e/setup.sh
	$(GO) run ./e2e/bench

# Short fuzzing pass over every fuzz target (the seed corpora also run in `make test`).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
