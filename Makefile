# redis-inventory: `make run` to try it, `make test` to check everything.
SHELL := /bin/bash
PORT ?= 6379
MODULE_DEBUG := target/debug/libinventory.so
MODULE_RELEASE := target/release/libinventory.so

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## Install redis-server, libclang and valkey-server when missing
	@scripts/deps.sh >/dev/null

build: deps ## Build the module (debug)
	cargo build

release: deps ## Build the module (release)
	cargo build --release

run: release ## Start redis-server with the module in the foreground (PORT=6379)
	redis-server redis.conf --port $(PORT) --loadmodule $(abspath $(MODULE_RELEASE))

test: deps ## Unit + property tests, integration on Redis 7.0 and Valkey 8.1, clippy, fmt
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo build
	cargo test --lib
	INVENTORY_SERVER=$$(command -v redis-server) cargo test --test integration
	INVENTORY_SERVER=$$(scripts/deps.sh) cargo test --test integration

budget: release ## Measure issue #2's budget: memory and CPU per INV.RESERVE vs the Lua script
	cargo run --release --example budget

clean: ## Remove build output
	cargo clean

.PHONY: help deps build release run test budget clean
