# The README's two commands are `make run` and `make test`; each installs what it needs.
SHELL := /bin/bash
.PHONY: install gen build lint typecheck test sim-long run bench clean

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
test: build typecheck lint
	node --import tsx --test --test-concurrency=2 --test-reporter=spec $$(find test -name '*.test.ts' | sort)

# Many more simulator seeds than CI runs (override with PGRAFT_SIM_SEEDS=N).
sim-long: install
	PGRAFT_SIM_SEEDS=$${PGRAFT_SIM_SEEDS:-50000} node --import tsx --test test/consensus/simulation.test.ts

# The main job. Until the sidecar exists this runs the consensus demo: a 3-node
# in-process cluster with real write-ahead logs on disk.
run: build
	node dist/src/cli/main.js demo

# Benchmarks, each beside the system a user would pick instead (etcd from Debian's packages).
bench: build
	@command -v etcd >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; } || echo "etcd could not be installed: its columns will be skipped"
	node dist/bench/consensus.js
	node dist/bench/kv.js
	node dist/bench/failover.js

clean:
	rm -rf dist
