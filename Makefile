# Two commands set plugtalk up on a fresh machine (see README):
#   make demo   -> creates .venv, installs plugtalk, animates the embedded default portrait
#   make test   -> creates .venv, installs plugtalk[all,test], runs the whole test suite
# Both install with constraints.txt: the exact torch / torchvision the parity fixtures were recorded with.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.plugtalk-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all,test]"
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
