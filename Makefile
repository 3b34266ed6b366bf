# The contract CI and people use. `make test` sets up a fresh machine first.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: setup test quickstart build lint bench fuzz

setup:
	./scripts/setup.sh

build:
	$(GO) build -o bin/sluice ./cmd/sluice

test: setup
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 14m ./...

quickstart: setup build
	./bin/sluice quickstart --duration 20s

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

bench: setup build
	./bench/run.sh

fuzz:
	$(GO) test ./internal/change -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 30s
