# aecnn: set-up, demo and tests. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Pinned versions that install from this project's machines (users may use any in range).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint clean baseline-cpu codec-bench aecnn-cpu deploy-cpu fig5-cpu \
        reproduce reproduce-smoke

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
	$(VENV)/bin/ruff check src tests experiments

baseline-cpu: venv
	$(VENV)/bin/aecnn train-baseline --config configs/baseline/resnet50_cpu.yaml --resume

codec-bench: venv
	$(VENV)/bin/aecnn bench codec --checkpoint runs/baseline/resnet50_cpu64/best.pt --no-progress
	$(VENV)/bin/aecnn bench fuzz --cases 100000

aecnn-cpu: venv
	$(VENV)/bin/aecnn train-aecnn --config configs/aecnn/resnet50_cpu.yaml
	for m in random l1 activation; do \
	  $(VENV)/bin/aecnn train-aecnn --config configs/aecnn/ablation_$$m.yaml; done
	$(VENV)/bin/aecnn fig4 --config configs/aecnn/resnet50_cpu.yaml --point stem
	$(VENV)/bin/aecnn report-aecnn runs/aecnn/resnet50_cpu64 \
	  --ablation runs/aecnn/ablation_random runs/aecnn/ablation_l1 runs/aecnn/ablation_activation

# Deployable variant files (stem: the uncompressed cut and AECNN at every ratio, the FR
# shape chosen by validation accuracy) from the CPU-scale run.
deploy-cpu: venv
	$(VENV)/bin/aecnn export runs/baseline/resnet50_cpu64/best.pt --point stem \
	  --name resnet50-stem-x1 --out runs/deploy/resnet50-stem-x1.pt
	for v in 2 4 8 16 32 64; do \
	  $(VENV)/bin/aecnn export --best runs/aecnn/resnet50_cpu64/stem/aecnn-x$$v \
	    --name resnet50-stem-fr-x$$v --out runs/deploy/resnet50-stem-fr-x$$v.pt; done

# Fig. 5 over real shaped links (root: network namespaces and tc).
fig5-cpu: deploy-cpu
	$(VENV)/bin/aecnn fig5 --config configs/runtime/fig5_cpu.yaml

# Table I and Fig. 4 from experiments/ (experiments/README.md; what was tried before is in
# docs/experiments.md). One scale's base config, optional overlays, optional overrides:
#   make reproduce SCALE=cpu SET='points=[stem]'
#   make reproduce SCALE=cpu OVERLAYS=ternary512
#   make reproduce WHAT=fig4 SCALE=cpu
# Every stage resumes, so rerun after an interruption.
WHAT     ?= table1
SCALE    ?= smoke
OVERLAYS ?=
SET      ?=
reproduce: venv
	$(PY) -m experiments.reproduce $(WHAT) --config experiments/configs/$(SCALE).yaml \
	  $(foreach o,$(OVERLAYS),--config experiments/configs/overlays/$(o).yaml) \
	  $(foreach s,$(SET),--set '$(s)') --no-progress

reproduce-smoke: venv
	$(PY) -m experiments.reproduce table1 --scale smoke --no-progress

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
