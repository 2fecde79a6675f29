# embedlab: `make demo` runs the tutorial pipeline, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench clean-venv strip

$(STAMP): pyproject.toml requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e ".[test,notebook]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (embedlab)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m embedlab.cli demo

test: $(STAMP)
	rm -rf runs/nbmake runs/nbmake-quickstart   # the notebooks' tiny test runs start fresh
	$(PY) -m pytest tests --nbmake notebooks

bench: $(STAMP)
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_quality.py
	$(PY) benchmarks/bench_thumbnails.py

strip: $(STAMP)
	$(PY) data_scripts/strip_notebooks.py notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
