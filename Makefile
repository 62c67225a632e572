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
	cargo clippy --workspace --all-targets -- -D warnings
	cargo build
	cargo test --lib
	INVENTORY_SERVER=$$(command -v redis-server) cargo test --test integration
	INVENTORY_SERVER=$$(scripts/deps.sh) cargo test --test integration
	INVENTORY_SERVER=$$(command -v redis-server) cargo test -p redis-inventory-client -- --test-threads=1
	INVENTORY_SERVER=$$(scripts/deps.sh) cargo test -p redis-inventory-client --test cluster -- --test-threads=1

budget: release ## Measure issue #2's budget: memory and CPU per INV.RESERVE vs the Lua script
	cargo run --release -p redis-inventory-bench --bin budget

cluster: release ## Start a local cluster (3 masters + 3 replicas, ports 7101-7106) with the module
	scripts/cluster.sh start

cluster-stop: ## Stop the local cluster
	scripts/cluster.sh stop

demo: release ## Flash sale through the client (CLUSTER=1 on a fresh local cluster)
	@if [ -n "$(CLUSTER)" ]; then \
	  scripts/cluster.sh start && \
	  cargo run --release -p redis-inventory-client --example flash_sale -- --cluster redis://127.0.0.1:7101/; \
	  status=$$?; scripts/cluster.sh stop; exit $$status; \
	else \
	  cargo run --release -p redis-inventory-client --example flash_sale -- --start; \
	fi

client-bench: release ## Client benchmark on a local cluster: batched vs one-at-a-time, order latency
	scripts/cluster.sh start
	cargo run --release -p redis-inventory-client --example client_bench -- redis://127.0.0.1:7101/; status=$$?; scripts/cluster.sh stop; exit $$status

bench: release ## Benchmark suite vs the Lua scripts (QUICK=1: under a minute; SERVER=valkey for Valkey; RATIOS=1: CPU goals only; HUGE=1: growth also at 10^7)
	cargo build --release -p redis-inventory-bench
	target/release/redis-inventory-bench $(if $(QUICK),--quick,--cluster) $(if $(RATIOS),--ratios-only) $(if $(HUGE),--huge) \
	  --server $(if $(filter valkey,$(SERVER)),$$(scripts/deps.sh),$$(command -v redis-server)) \
	  --out docs/bench$(if $(filter valkey,$(SERVER)),/valkey,)

clean: ## Remove build output
	cargo clean

.PHONY: help deps build release run test budget bench cluster cluster-stop demo client-bench clean
