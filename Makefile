# embedlab: `make demo` runs the tutorial pipeline, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench clean-venv strip lint docs site

$(STAMP): pyproject.toml requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e ".[pipeline,notebook,test,site]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (embedlab)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m embedlab.cli demo

test: $(STAMP)
	rm -rf runs/nbmake runs/nbmake-quickstart   # the notebooks' tiny test runs start fresh
	$(PY) -m pytest tests --nbmake notebooks

bench: $(STAMP)
	$(PY) benchmarks/bench_train_step.py --json benchmarks/results/train_step.json
	$(PY) benchmarks/bench_embed.py --json benchmarks/results/embed.json
	$(PY) benchmarks/bench_quality.py --json benchmarks/results/quality.json
	$(PY) benchmarks/bench_thumbnails.py --json benchmarks/results/thumbnails.json
	$(PY) benchmarks/gpu_check.py  # on a GPU machine; writes benchmarks/results/ (see docs/benchmarks.md)

strip: $(STAMP)
	$(PY) data_scripts/strip_notebooks.py notebooks/*.ipynb

lint: $(STAMP)
	PYTHON=$(PY) RUFF=$(VENV)/bin/ruff data_scripts/lint.sh

docs: $(STAMP)
	$(PY) data_scripts/make_docs.py

site: $(STAMP)   # the executed demo notebooks + README + docs/ as a static website in site/ (MkDocs, offline, strict)
	$(PY) data_scripts/make_diagrams.py --check
	$(PY) data_scripts/make_site.py --run runs/demo --out site

clean-venv:
	rm -rf $(VENV)
