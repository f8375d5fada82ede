# Two commands set plugtalk up on a fresh machine (see README):
#   make demo   -> creates .venv, installs plugtalk, animates the embedded default portrait
#   make test   -> creates .venv, installs plugtalk[test,onnx,ui], runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.plugtalk-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,onnx,ui]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/plugtalk demo --out demo-output

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/plugtalk bench

clean:
	rm -rf $(VENV) demo-output .pytest_cache
