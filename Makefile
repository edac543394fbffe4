# The Makefile is the project's interface: make run | up | down | test | bench.
# Every target installs what it needs (as root on Debian) and works on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TERM_COLOR ?= never

STACK := dev/stack.sh

.PHONY: help bootstrap stack stack-ha stack-down up-ha ha-status chaos assets build run up down test test-rust test-browser k8s-check bench lint fmt

help:
	@echo "make run    - start the local stack and run the services in the foreground"
	@echo "make up     - same, in the background;  make down - stop it all again"
	@echo "make up-ha  - the replicated topology (Patroni, clustered RabbitMQ, HAProxy, 2+2 replicas), in the background"
	@echo "make chaos  - the fault harness on the replicated topology; writes docs/reliability.md"
	@echo "make test   - the whole test suite on the real stack"
	@echo "make bench  - the benchmark, writes docs/benchmarks.md"

bootstrap:
	bash dev/bootstrap.sh

stack: bootstrap
	bash $(STACK) up

stack-ha: bootstrap
	bash $(STACK) up-ha

stack-down:
	bash $(STACK) down

assets: bootstrap
	bash dev/assets.sh

build: assets
	cargo build --workspace --bins

run: stack build
	bash dev/run.sh foreground

up: stack build
	bash dev/run.sh background

up-ha: stack-ha build
	bash dev/run.sh ha-background

ha-status:
	bash $(STACK) ha-status

# The fault harness runs its own replicated topology in a private network
# namespace (dev/chaos.sh), so it needs the binaries, not a running stack.
chaos: bootstrap build
	bash dev/chaos.sh

down:
	bash dev/run.sh stop
	bash $(STACK) down

test: stack assets
	bash dev/test.sh

bench: stack assets
	bash dev/bench.sh

# The checks include scraping both services' metrics, so they need the stack and the binaries.
k8s-check: stack build
	bash dev/k8s-check.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
