# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint check-ledger clean bench chaos cluster-test fuzz-api

# No pip self-upgrade first: the venv's own pip installs these wheels (Python 3.11's 23.2.1 did),
# and the upgrade alone took 44 s of a fresh clone's make bench on a loaded 2-core machine.
# `make bench` needs only what the service runs on (requirements.txt down to its "# Tools" line:
# 47 of the 78 packages); `make install` adds the tools (tests, linters, browser, fuzzer).
# pip compiles every installed module one file after another (about 9 of its 20 s of CPU); the
# same .pyc files are compiled here on every core instead (compileall -j 0), and pip does not ask
# the index whether a newer pip exists.
$(BIN)/.installed-run: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed '/^# Tools/,$$d' requirements.txt > $(VENV)/requirements-run.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -r $(VENV)/requirements-run.txt
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $@

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@ $(BIN)/.installed-run

install: $(BIN)/.installed

## Run the service on the embedded default (SQLite + embedded Redis under instance/).
run: install
	$(BIN)/python -m devtools.devserver

## Run the whole test suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set).
test: install
	$(BIN)/ruff check .
	$(BIN)/bandit -r ussd_app worker devtools -q
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/bandit -r ussd_app worker devtools -q
	$(BIN)/ruff format --check ussd_app worker devtools tests

check-ledger: install
	$(BIN)/flask --app wsgi ledger check

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis

## Benchmarks (PostgreSQL and Redis on this machine, wrk, pgbench): prints a table, writes BENCHMARKS.md.
## wrk from apt when missing: apt-get update only when the package lists do not have it (tens of seconds).
bench: $(BIN)/.installed-run
	command -v wrk >/dev/null || apt-get install -y -qq wrk 2>/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run_all.py

## Faults under load (PostgreSQL from DATABASE_URL, a database <name>_chaos made and dropped; its own
## redis-server on CHAOS_REDIS_PORT, 6390): prints a summary line; CHAOS_SEED=N replays a run.
chaos: install
	$(BIN)/python -m chaos

## Several hosts in network namespaces on this machine (root; installs haproxy, patroni, etcd and
## iptables with apt-get when absent): load through HAProxy while web, worker, Redis and PostgreSQL
## hosts fail in turn; docs/deploy.md. CLUSTER_SEED=N replays a run's order of faults.
CLUSTER_PACKAGES := haproxy patroni etcd-server iptables redis-server postgresql-15
cluster-test: install
	@for p in $(CLUSTER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	CLUSTER_SEED=$(CLUSTER_SEED) $(BIN)/python -m chaos.cluster

## Fuzz the merchant API of a started server from outside (schemathesis CLI; docs/api.md, "Fuzzed
## from outside"): TUMA_API_KEY=<a key with every scope> [FUZZ_URL=http://127.0.0.1:8000]
## [FUZZ_EXAMPLES=300]. Start the server with TUMA_API_RATE_PER_MINUTE=1000000 or it answers 429s.
## PUT /webhooks is left out: on `make run` the worker would deliver events to the URLs it invents.
FUZZ_URL ?= http://127.0.0.1:8000
FUZZ_EXAMPLES ?= 300
fuzz-api: install
	@test -n "$$TUMA_API_KEY" || { echo "TUMA_API_KEY=<key> make fuzz-api (a started server: make run)" >&2; exit 2; }
	$(BIN)/schemathesis --config-file devtools/fuzz_api.toml run $(FUZZ_URL)/api/v1/openapi.json \
		--checks all --max-examples $(FUZZ_EXAMPLES) --exclude-method PUT --continue-on-failure --no-color
