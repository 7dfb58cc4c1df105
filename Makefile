# The two set-up commands of the README. Each builds .venv when missing (CPU torch, pinned).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: demo test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,plot]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/loraforge run recipes/medical_ner_tiny.toml --set output.overwrite=true

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
