# aecnn: set-up, demo and tests. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Pinned versions that install from this project's machines (users may use any in range).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint clean baseline-cpu

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_PIN)
	touch $@

demo: venv
	$(VENV)/bin/aecnn demo --no-progress

test: venv
	$(VENV)/bin/python -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests

baseline-cpu: venv
	$(VENV)/bin/aecnn train-baseline --config configs/baseline/resnet50_cpu.yaml --resume

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
