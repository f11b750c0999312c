# The README's two commands are `make run` and `make test`; each installs what it needs.
SHELL := /bin/bash
.PHONY: install gen build lint typecheck test sim-long run bench clean postgres install-extension

# PostgreSQL 15 server binaries (tests and the demo run real servers): installed from
# Debian's packages when missing and we may (root); PGRAFT_PG_BIN points elsewhere.
PG_BIN ?= $(firstword $(PGRAFT_PG_BIN) $(wildcard /usr/lib/postgresql/15/bin) $(lastword $(sort $(wildcard /usr/lib/postgresql/*/bin))))
postgres:
	@if [ -z "$(PG_BIN)" ] || [ ! -x "$(PG_BIN)/initdb" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-contrib >/dev/null; \
	  else echo "PostgreSQL server binaries not found: install postgresql-15 (with contrib) or set PGRAFT_PG_BIN" >&2; exit 1; fi; \
	fi

node_modules/.install-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.install-stamp

# TypeScript for the gRPC messages (buf + protoc-gen-es, offline); not committed.
gen: install
	npm run gen

build: gen
	npx tsc -p tsconfig.json

typecheck: gen
	npx tsc --noEmit -p tsconfig.lint.json

lint: gen
	npx eslint --max-warnings 0 .

# Everything CI runs: install, build, typecheck, lint, every test.
test: build typecheck lint postgres
	node --import tsx --test --test-concurrency=2 --test-reporter=spec $$(find test -name '*.test.ts' | sort)

# Many more simulator seeds than CI runs (override with PGRAFT_SIM_SEEDS=N).
sim-long: install
	PGRAFT_SIM_SEEDS=$${PGRAFT_SIM_SEEDS:-50000} node --import tsx --test test/consensus/simulation.test.ts

# The main job: a local 3-node cluster of PostgreSQL + sidecars with the SQL shim;
# prints a psql command per node; Ctrl-C stops it (DEMO_ARGS="--nodes 5 --base-dir DIR").
# It builds only when a source changed since its last build (dist/.run-build-stamp).
RUN_SOURCES := $(shell find src bench proto -path src/gen -prune -o -type f \( -name '*.ts' -o -name '*.proto' \) -print) tsconfig.json buf.gen.yaml
dist/.run-build-stamp: node_modules/.install-stamp $(RUN_SOURCES)
	npm run gen
	npx tsc -p tsconfig.json
	@touch $@

run: dist/.run-build-stamp postgres
	./pgraft demo $(DEMO_ARGS)

# The shim as a PostgreSQL extension in `pg_config --sharedir`/extension (CREATE EXTENSION pgraft CASCADE).
install-extension: build postgres
	node dist/src/cli/main.js extension --out "$$($(or $(PG_BIN),/usr/bin)/pg_config --sharedir)/extension"

# Benchmarks, each beside the system a user would pick instead (etcd, wal2json and haproxy from Debian's packages).
# Every benchmark runs even when one before it fails; the failures are named at the end (exit 1).
BENCHES := consensus kv failover failover-app sql replication multi-writer proxy decode-origin-filter applier-alone sidecar-resources
bench: build postgres
	@command -v etcd >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; } || echo "etcd could not be installed: its columns will be skipped"
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } || echo "haproxy could not be installed: bench/proxy will skip its column"
	@[ -e "$$($(or $(PG_BIN),/usr/bin)/pg_config --pkglibdir)/wal2json.so" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-wal2json >/dev/null; } || echo "wal2json could not be installed: bench/decode-origin-filter will fail"
	@failed=""; for b in $(BENCHES); do echo "== bench/$$b"; node dist/bench/$$b.js || failed="$$failed $$b"; echo; done; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed:$$failed" >&2; exit 1; fi

clean:
	rm -rf dist
