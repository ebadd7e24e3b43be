# Lifecycle of the local system. Every target is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ORDERFLOW := $(VENV)/bin/orderflow
export PYTHONPATH := $(CURDIR)

.PHONY: venv up down clean topics lint test test-unit worker diagram start stop demo verify replay fuzz chaos bench

N ?= 2
# BROKERS=3 (or more): the local cluster of deploy/kafka/cluster.sh instead of the single broker;
# every target then talks to it (KAFKA_BOOTSTRAP_SERVERS). SASL_SSL=1 adds its secure listener.
BROKERS ?= 1
ifeq ($(BROKERS),1)
KAFKA_SH := bash deploy/kafka/kafka.sh
else
KAFKA_SH := BROKERS=$(BROKERS) bash deploy/kafka/cluster.sh
ifeq ($(origin KAFKA_BOOTSTRAP_SERVERS),undefined)
export KAFKA_BOOTSTRAP_SERVERS := $(shell BROKERS=$(BROKERS) bash deploy/kafka/cluster.sh bootstrap)
endif
endif
ORDERS ?= 1000
RATE ?= 50
# process: the process manager (default); saga: the article's stateless saga in its place
# (process_manager.saga), for the comparison in the README. Workers and the demo read it.
COORDINATION ?= process
export COORDINATION
# The workers of make start (and so of the demo) time a silent gateway out after 15 s in
# AwaitingPayment; verify and replay must fold with the same timeouts.
WORKER_TIMEOUTS ?= {"AwaitingPayment": 15}
WITH_TIMEOUTS := PROCESS_TIMEOUTS='$(WORKER_TIMEOUTS)'
# A card payment settles this long after it is finalized. The demo's "out of stock, payment
# discarded" orders need the stock refusal first: at 5 s, a loaded machine settled 10 of them
# before it, and the process manager refunded them, as it should, but not as the mix expects.
SETTLEMENT_DELAY_S ?= 30

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

up: venv  ## Kafka (KRaft, from Maven jars; BROKERS nodes) and PostgreSQL running
	$(KAFKA_SH) start >/dev/null
	bash deploy/postgres/postgres.sh start
	@echo "Kafka:      $${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
	@echo "PostgreSQL: 127.0.0.1:$${PGPORT:-5432} (database orderflow)"

down:  ## stop Kafka (the single broker and the cluster) and PostgreSQL
	bash deploy/kafka/kafka.sh stop
	bash deploy/kafka/cluster.sh stop
	bash deploy/postgres/postgres.sh stop

clean: down  ## wipe local data (Kafka logs, Postgres cluster, Faust tables)
	rm -rf .data

topics: up  ## create every contract topic
	$(PY) -m streams.kafka.admin topics

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy process_manager aggregates streams bench

test-unit: venv
	$(VENV)/bin/pytest -m 'not integration'

test: topics  ## the whole suite, against the real services (and a headless Chromium and kcat)
	bash deploy/browser.sh >/dev/null
	bash deploy/kcat.sh >/dev/null
	$(VENV)/bin/pytest

worker: topics  ## one worker in the foreground (orderflow worker: faust -A streams.process.worker worker)
	$(ORDERFLOW) worker

diagram: venv  ## regenerate the README state diagram from the transition table
	$(PY) -m tests.readme_diagram --write

start: topics  ## N background workers (logs and pids under .data/workers/)
	$(WITH_TIMEOUTS) PAYMENT_SETTLEMENT_DELAY_S=$(SETTLEMENT_DELAY_S) bash deploy/workers.sh start $(N)

stop:  ## stop the background workers
	bash deploy/workers.sh stop

demo: start  ## the main job: drive ORDERS carts through N workers and print the summary
	$(PY) -m streams.tools.demo --orders $(ORDERS) --rate $(RATE) --workers $(N)
	@echo "The workers keep running: 'make stop' stops them, 'make down' stops Kafka and Postgres."

verify: venv  ## fold the event topics offline and diff against the live process states
	$(WITH_TIMEOUTS) $(ORDERFLOW) verify

replay: venv  ## rebuild the process table into APP_VERSION+1 (and the read model); prints how to switch
	$(WITH_TIMEOUTS) $(ORDERFLOW) replay --read-model

FUZZ_EXAMPLES ?= 100
fuzz: topics  ## fuzzed bad input on every input topic against a real worker
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -m fuzz tests/fuzz

# PROFILE: classic (kills and one broker restart), long-outage (workers and module runners
# killed around a broker outage longer than the payment and shipment timeouts) or
# long-outage-short (what CI runs); with BROKERS=3, cluster (kill -9 the node leading the
# most partitions, then start it again). SEED repeats a run (default: random, printed);
# CHAOS_ORDERS overrides the profile's order count; CHAOS_ARGS passes anything else.
ifeq ($(BROKERS),1)
PROFILE ?= classic
else
PROFILE ?= cluster
endif
SEED ?=
CHAOS_ORDERS ?=
CHAOS_ARGS ?=
chaos: topics  ## kill -9 workers and stop the broker (BROKERS=3: kill -9 a node) under load (PROFILE, SEED), then check every invariant
	$(PY) -m tests.chaos.run --profile $(PROFILE) $(if $(SEED),--seed $(SEED)) \
	  $(if $(CHAOS_ORDERS),--orders $(CHAOS_ORDERS)) $(CHAOS_ARGS)

bench: topics  ## benchmarks (BENCH_ARGS=--quick for a short run); results in .data/bench/ and bench/latest.json
	$(PY) -m bench $(BENCH_ARGS)
