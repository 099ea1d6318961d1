# varcall — every target installs what it needs first, so `make demo` and `make test`
# work on a fresh clone.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: install test test-slow test-slurm demo bench bench-scale data clean lint

# byte-compile varcall each time (only changed files are compiled again): an editable install
# has no .pyc files, and where PYTHONDONTWRITEBYTECODE is set Python would compile its ~90
# modules in every process (CLI, each Dask worker), about 0.1 s each time
install: $(STAMP)
	@$(BIN)/python -m compileall -q varcall

# the exact tested versions (constraints.txt) within pyproject.toml's compatible ranges
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check varcall tests benchmarks
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

test-slurm: install
	bash tests/slurm/start.sh
	$(BIN)/pytest -q -m slurm

data: install
	$(BIN)/varcall simulate --out data/cohort --samples 3 --contigs 2 --length 200000 --seed 1 --overwrite

demo: install
	$(BIN)/varcall simulate --out $(DEMO)/cohort --samples 3 --contigs 2 --length 200000 --coverage 30 --seed 1 --overwrite
	$(BIN)/varcall call --single-process -f $(DEMO)/cohort/reference.fa --bam-list $(DEMO)/cohort/bams.txt -o $(DEMO)/single --overwrite
	$(BIN)/varcall call --workers 2 -f $(DEMO)/cohort/reference.fa --bam-list $(DEMO)/cohort/bams.txt -o $(DEMO)/distributed --region-count 8 --overwrite
	@cmp <(zcat $(DEMO)/single/calls.vcf.gz | grep -v -e '^##fileDate' -e '^##varcallCommand') \
	     <(zcat $(DEMO)/distributed/calls.vcf.gz | grep -v -e '^##fileDate' -e '^##varcallCommand') \
	  && echo "distributed VCF records identical to single-process"
	$(BIN)/varcall concordance -f $(DEMO)/cohort/reference.fa $(DEMO)/distributed $(DEMO)/single --truth $(DEMO)/cohort/truth.vcf.gz --bed $(DEMO)/cohort/confident.bed --out $(DEMO)/concordance --require-identical
	$(BIN)/varcall report $(DEMO)/distributed $(DEMO)/single --concordance $(DEMO)/concordance --out $(DEMO)/report.html
	@echo "demo outputs in $(DEMO)/"
	@echo "report: $(abspath $(DEMO))/report.html"

bench: install
	$(BIN)/python benchmarks/run.py

bench-scale: install
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) data/cohort .pytest_cache build *.egg-info varcall.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
