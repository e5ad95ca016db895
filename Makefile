# aecnn: set-up, demo and tests. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Pinned versions that install from this project's machines (users may use any in range).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint clean baseline-cpu codec-bench aecnn-cpu deploy-cpu fig5-cpu \
        reproduce-smoke reproduce-cpu-stem reproduce-cpu-layer1 reproduce-cpu-longqat \
        reproduce-cpu-longft reproduce-cpu-longft-frlr \
        reproduce-cpu-longft-frquiet reproduce-cpu-longft-frquiet-ratios \
        reproduce-cpu-longft-frquiet-fr3x3 reproduce-cpu-longft-frquiet-layer1 \
        reproduce-cpu-longft-frquiet-ratios-prior reproduce-cpu-longft-frquiet-kd \
        reproduce-cpu-longft-frquiet-kdall reproduce-cpu-longft-frquiet-kd-half \
        reproduce-cpu-longft-frquiet-kd-half-tern reproduce-cpu-longft-frquiet-kd-half-tern-seeds \
        reproduce-cpu-longft-frquiet-kd-half-tern-lr3 reproduce-cpu-longft-frquiet-kd-half-tern-3seeds \
        reproduce-cpu-longft-frquiet-kd-half-tern-fresh reproduce-cpu-longft-frquiet-kd-half-tern-qat6 \
        reproduce-cpu-longft-frquiet-kd-half-tern-qat6-noclip \
        reproduce-cpu-longft-frquiet-kd-half-tern-qat6-p97 \
        reproduce-cpu-longft-frquiet-kd-half-seeds

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

# Table I and Fig. 4 (docs/reproduction.md). The cpu scale runs one split point at a time
# (~3 h each after the ~80-min baseline); every stage resumes, so rerun after an interruption.
reproduce-smoke: venv
	$(VENV)/bin/aecnn reproduce table1 --scale smoke

reproduce-cpu-stem: venv
	$(VENV)/bin/aecnn reproduce table1 --scale cpu --set 'points=[stem]'
	$(VENV)/bin/aecnn reproduce fig4 --scale cpu --point stem

reproduce-cpu-layer1: venv
	$(VENV)/bin/aecnn reproduce table1 --scale cpu --set 'points=[layer1.0]'

# Variants of the cpu scale at the stem (configs/reproduce/cpu-*.yaml). The stages they share
# with an earlier run are hard-linked from there when they exist (same networks, no
# retraining); otherwise the command trains them. $(call link_shared,STAGES,FROM,TO) with
# STAGES as run:stage items and FROM, TO the runs' folder names under runs/<run>/.
define link_shared
	@for item in $(1); do \
	  run=$${item%%:*}; stage=$${item#*:}; \
	  src=runs/$$run/$(2)/stem/$$stage; dst=runs/$$run/$(3)/stem; \
	  if [ -e $$src ] && [ ! -e $$dst/$$stage ]; then \
	    mkdir -p $$dst && cp -al $$src $$dst/ && echo "linked $$src"; fi; \
	done
endef

# Four epochs of QAT at V = 16 on the cpu run's networks.
LONGQAT_SHARED := aecnn:ca aecnn:importance.json aecnn:pruned-x16 aecnn:aecnn-x16 \
                  aecnn:aecnn-x16-1x1 bottlenet:bottlenet-module-x16 bottlenet:bottlenet-x16
reproduce-cpu-longqat: venv
	$(call link_shared,$(LONGQAT_SHARED),resnet50_cpu64,resnet50_cpu64_longqat)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longqat.yaml

# Ten epochs per method at V = 16 (pruned 5, FR 2, QAT 3; BottleNet++ module 5, joint 2,
# QAT 3): only the CA stage and its channel ranking are shared with the cpu run.
reproduce-cpu-longft: venv
	$(call link_shared,aecnn:ca aecnn:importance.json,resnet50_cpu64,resnet50_cpu64_longft)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft.yaml

# cpu-longft with FR at lr 1e-3: every stage before FR and all of BottleNet++ come from it.
LONGFT_FRLR_SHARED := aecnn:ca aecnn:importance.json aecnn:pruned-x16 \
                      bottlenet:bottlenet-module-x16 bottlenet:bottlenet-x16 \
                      bottlenet:bottlenet-q2-x16
reproduce-cpu-longft-frlr: venv
	$(call link_shared,$(LONGFT_FRLR_SHARED),resnet50_cpu64_longft,resnet50_cpu64_longft_frlr)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frlr.yaml

# cpu-longft with FR's last layer initialised near zero: the same stages shared as for frlr.
reproduce-cpu-longft-frquiet: venv
	$(call link_shared,$(LONGFT_FRLR_SHARED),resnet50_cpu64_longft,resnet50_cpu64_longft_frquiet)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet.yaml

# cpu-longft-frquiet's protocol at V = 16, 32 and 64 for seed 2: it shares that scale's runs,
# so seed 2's baseline, CA stage and V = 16 stages are reused when they exist.
reproduce-cpu-longft-frquiet-ratios: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-ratios.yaml

# cpu-longft-frquiet-ratios measured again with a context prior per network and integer grid
# (wire coder 5, fitted on 1,000 training images): nothing trains, so run that target first.
reproduce-cpu-longft-frquiet-ratios-prior: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-ratios-prior.yaml

# cpu-longft-frquiet-ratios with a 3x3 FR next to the 1x1 one: seed 2's stages up to the 1x1
# FR come from cpu-longft-frquiet(-ratios); the QAT stages are not linked, since QAT follows
# the FR shape that wins the validation.
FR3X3_SHARED := aecnn:ca aecnn:importance.json $(foreach v,16 32 64,aecnn:pruned-x$(v) aecnn:aecnn-x$(v))
reproduce-cpu-longft-frquiet-fr3x3: venv
	$(call link_shared,$(FR3X3_SHARED),resnet50_cpu64_longft_frquiet-seed2,resnet50_cpu64_longft_frquiet_fr3x3-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-fr3x3.yaml

# cpu-longft-frquiet's protocol at layer1.0, V = 32 and 64, seed 2 (its baseline is reused;
# CA and every later stage train, ~80 min on 2 cores).
reproduce-cpu-longft-frquiet-layer1: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-layer1.yaml

# cpu-longft-frquiet-ratios at V = 16 with distilled QAT through 2- and 1-bit grids, measured
# with context priors: the stages before QAT are linked from that scale's seed-2 runs when
# they exist (else they train); the six QAT stages train (~45 min on 2 cores).
KD_SHARED := aecnn:ca aecnn:importance.json aecnn:pruned-x16 aecnn:aecnn-x16 \
             bottlenet:bottlenet-module-x16 bottlenet:bottlenet-x16
reproduce-cpu-longft-frquiet-kd: venv
	$(call link_shared,$(KD_SHARED),resnet50_cpu64_longft_frquiet-seed2,resnet50_cpu64_longft_frquiet_kd-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd.yaml

# cpu-longft-frquiet-kd with every stage after CA distilled (2-bit QAT only): the CA stage and
# ranking are linked from cpu-longft-frquiet-ratios' seed 2; the rest trains (~40 min).
reproduce-cpu-longft-frquiet-kdall: venv
	$(call link_shared,aecnn:ca aecnn:importance.json,resnet50_cpu64_longft_frquiet-seed2,resnet50_cpu64_longft_frquiet_kdall-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kdall.yaml --no-progress

# cpu-longft-frquiet-kd with both methods sending half the height and width (BottleNet++'s
# stride-2 encoder, AECNN's 2x2 average pool) at V = 8 and 16: the CA stage and ranking are
# linked from cpu-longft-frquiet-kd's seed 2 (run that target first); the rest trains
# (~100 min on 2 cores: BottleNet++ ~27, AECNN ~31, 1-bit and clipped QAT ~35, measuring).
reproduce-cpu-longft-frquiet-kd-half: venv
	$(call link_shared,aecnn:ca aecnn:importance.json,resnet50_cpu64_longft_frquiet_kd-seed2,resnet50_cpu64_longft_frquiet_kd_half-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half.yaml --no-progress

reproduce-cpu-longft-frquiet-kd-half-seeds: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-seeds.yaml --no-progress

# cpu-longft-frquiet-kd-half at V = 8 with rate-regularised 2-bit QAT: `make
# reproduce-cpu-longft-frquiet-kd-half-rateW` for W = 0.2, 1, 3 and the control 0 (no rate
# term), the scales configs/reproduce/cpu-longft-frquiet-kd-half-rateW.yaml. Everything before
# QAT trains in the 0.2 run (~28 min after seed 2's ~50-min baseline) and is linked into the
# others, whose QAT stages alone train (~12 min each with the measurement). A pattern rule,
# so not .PHONY (make skips pattern rules for phony targets).
RATE_AECNN := aecnn:ca aecnn:importance.json aecnn:pruned-x8 aecnn:aecnn-x8
RATE_BOTTLENET := bottlenet:bottlenet-module-x8 bottlenet:bottlenet-x8
RATE_FROM := rate0.2-seed2
reproduce-cpu-longft-frquiet-kd-half-rate%: venv
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_$(RATE_FROM),resnet50_cpu64_longft_frquiet_kd_half_rate$*-seed2)
	$(call link_shared,$(RATE_BOTTLENET),resnet50_cpu64_longft_frquiet_kd_s2_$(RATE_FROM),resnet50_cpu64_longft_frquiet_kd_s2_rate$*-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-rate$*.yaml --no-progress

# the rate sweep's networks before QAT, fine-tuned through ternary grids (uint2l3)
reproduce-cpu-longft-frquiet-kd-half-tern: venv
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_$(RATE_FROM),resnet50_cpu64_longft_frquiet_kd_half_tern-seed2)
	$(call link_shared,$(RATE_BOTTLENET),resnet50_cpu64_longft_frquiet_kd_s2_$(RATE_FROM),resnet50_cpu64_longft_frquiet_kd_s2_tern-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern.yaml --no-progress

# a second seed of the ternary cells (trains seed 3's baseline and every stage)
reproduce-cpu-longft-frquiet-kd-half-tern-seeds: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-seeds.yaml --no-progress

# a third seed (4) of the ternary cells (trains seed 4's baseline and every stage)
reproduce-cpu-longft-frquiet-kd-half-tern-3seeds: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-3seeds.yaml --no-progress

# the ternary cells of seeds 2, 3 and 4 with every stage on its own stream of batches and
# crops (the baselines are -tern-3seeds's)
reproduce-cpu-longft-frquiet-kd-half-tern-fresh: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-fresh.yaml --no-progress

# seeds 2, 3 and 4's ternary cells with six QAT epochs instead of three (trains each seed's
# baseline and every stage; the stages before QAT are configured as -tern-fresh's)
reproduce-cpu-longft-frquiet-kd-half-tern-qat6: venv
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-qat6.yaml --no-progress

# seed 2's AECNN (pool 2) of -tern-qat6 through the unclipped ternary grid (run -tern-qat6
# first: AECNN's stages before QAT are linked from it, BottleNet++'s are its own)
reproduce-cpu-longft-frquiet-kd-half-tern-qat6-noclip: venv
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_tern_qat6-seed2,resnet50_cpu64_longft_frquiet_kd_half_tern_qat6_noclip-seed2)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-qat6-noclip.yaml --no-progress

# seeds 2, 3 and 4's AECNN (pool 2) of -tern-qat6 through the ternary grid clipped at p97 (run
# -tern-qat6 first: AECNN's stages before QAT are linked from it, BottleNet++'s are its own)
reproduce-cpu-longft-frquiet-kd-half-tern-qat6-p97: venv
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_tern_qat6-seed2,resnet50_cpu64_longft_frquiet_kd_half_tern_qat6_p97-seed2)
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_tern_qat6-seed3,resnet50_cpu64_longft_frquiet_kd_half_tern_qat6_p97-seed3)
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_tern_qat6-seed4,resnet50_cpu64_longft_frquiet_kd_half_tern_qat6_p97-seed4)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-qat6-p97.yaml --no-progress

# the ternary cells of both seeds with QAT at lr 0.003: every network before QAT is linked
# from the -tern and -tern-seeds runs (run those first), so only the QAT stages train
reproduce-cpu-longft-frquiet-kd-half-tern-lr3: venv
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_tern-seed2,resnet50_cpu64_longft_frquiet_kd_half_tern_lr3-seed2)
	$(call link_shared,$(RATE_AECNN),resnet50_cpu64_longft_frquiet_kd_half_tern-seed3,resnet50_cpu64_longft_frquiet_kd_half_tern_lr3-seed3)
	$(call link_shared,$(RATE_BOTTLENET),resnet50_cpu64_longft_frquiet_kd_s2_tern-seed2,resnet50_cpu64_longft_frquiet_kd_s2_tern_lr3-seed2)
	$(call link_shared,$(RATE_BOTTLENET),resnet50_cpu64_longft_frquiet_kd_s2_tern-seed3,resnet50_cpu64_longft_frquiet_kd_s2_tern_lr3-seed3)
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-tern-lr3.yaml --no-progress

# the same networks measured with raster context priors (nothing is trained again)
reproduce-cpu-longft-frquiet-kd-half-raster%: reproduce-cpu-longft-frquiet-kd-half-rate%
	$(VENV)/bin/aecnn reproduce table1 --config configs/reproduce/cpu-longft-frquiet-kd-half-rate$*-raster.yaml --no-progress

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
