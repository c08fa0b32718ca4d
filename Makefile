# elurepro: every experiment of the paper, its figures and tables, from one command each.
#   make demo            install, a short real mnist_meanact run, its figure and table
#   make test            install, then the test suite (slow tests: make test-slow)
#   make <target> BUDGET=smoke|short|paper [WORKERS=N]   train what is missing, then analyse into results/
# Data: ELUREPRO_DATA=<folder> (default ~/.cache/elurepro/data, downloaded there when missing).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUDGET ?= paper
RUNS ?= $(or $(ELUREPRO_RUNS),runs)
ARGS ?=
# Workers sharing one sweep on this machine, one GPU each: make cifar100-fig4 WORKERS=4
WORKERS ?= 1
TRAIN := bash scripts/workers.sh $(WORKERS) $(PY) -m elurepro.train
ANALYZE := $(PY) -m elurepro.analyze

.PHONY: install demo test test-slow test-cluster lint format bench bench-gpu curves-gpu clean-venv leaderboard learns \
	mnist-fig2 autoencoder-fig3 cifar100-fig4 cifar100-fig5 cifar100-table1 cifar10-table1 \
	imagenet-fig6 all-figures

install: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(TRAIN) experiment=mnist_meanact budget=demo $(ARGS)
	$(ANALYZE) mnist_meanact $(RUNS)/mnist_meanact/mnist-demo
	@echo "demo done: figure $(RUNS)/mnist_meanact/mnist-demo/report/fig2_mean_activation_and_loss.png," \
	      "table $(RUNS)/mnist_meanact/mnist-demo/report/report.md"

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# Against a throwaway single-node Slurm cluster that the tests start (scripts/local_slurm.sh, as
# root with apt-get) and stop; skipped, with the reason, where it cannot be started.
test-cluster: $(STAMP)
	$(PY) -m pytest -m cluster tests/test_cluster.py

lint: $(STAMP)
	$(PY) -m ruff check elurepro tests scripts hydra_plugins
	$(PY) -m ruff format --check elurepro tests scripts hydra_plugins

format: $(STAMP)
	$(PY) -m ruff format elurepro tests scripts
	$(PY) -m ruff check --fix elurepro tests scripts

bench: $(STAMP)
	$(PY) scripts/bench.py

# Does every paper protocol learn? Each experiment x unit x BN variant for its first iterations
# on real data (ELUREPRO_DATA); fails unless every member starts sane, never diverges, and learns.
# LEARNS_ARGS='--only cifar_18layer --steps 200 --device cuda'
LEARNS_ARGS ?=
learns: $(STAMP)
	$(PY) -m elurepro.learns --out results/learns/report.md $(LEARNS_ARGS)

# Issue 25's GPU measurements in at most 8 minutes, results in $(OUT) (default gpu-out). A lent
# GPU machine has no venv: the target then uses that machine's python3 and installs nothing.
bench-gpu:
	PY=$(if $(wildcard $(PY)),$(PY),python3) bash scripts/gpu_check.sh

# Issue 21's item 6 on a lent GPU: 5,000 iterations of both CIFAR nets, ELU and ReLU.
curves-gpu:
	PLAN=curves PY=$(if $(wildcard $(PY)),$(PY),python3) bash scripts/gpu_check.sh

# ---- the paper's figures and tables (train what is missing, then analyse) -------------------
mnist-fig2: $(STAMP)
	$(TRAIN) experiment=mnist_meanact budget=$(BUDGET) $(ARGS)
	$(ANALYZE) mnist_meanact $(RUNS)/mnist_meanact/mnist-$(BUDGET) --out results/mnist_meanact/mnist-$(BUDGET)

autoencoder-fig3: $(STAMP)
	$(TRAIN) experiment=mnist_autoencoder budget=$(BUDGET) $(ARGS)
	$(ANALYZE) mnist_autoencoder $(RUNS)/mnist_autoencoder/mnist-$(BUDGET) --out results/mnist_autoencoder/mnist-$(BUDGET)

# Figs. 4 and 5 come from the same 80 runs; either target trains them and writes both.
# CIFAR11_DATA=cifar10 runs the same protocol on CIFAR-10 (not comparable with the paper's numbers).
CIFAR11_DATA ?= cifar100
cifar100-fig4 cifar100-fig5: $(STAMP)
	$(TRAIN) experiment=cifar100_11layer data=$(CIFAR11_DATA) budget=$(BUDGET) $(ARGS)
	$(ANALYZE) cifar100_11layer $(RUNS)/cifar100_11layer/$(CIFAR11_DATA)-$(BUDGET) --out results/cifar100_11layer/$(CIFAR11_DATA)-$(BUDGET)

cifar100-table1: $(STAMP)
	$(TRAIN) experiment=cifar_18layer data=cifar100 budget=$(BUDGET) $(ARGS)
	$(ANALYZE) cifar_18layer $(RUNS)/cifar_18layer/cifar100-$(BUDGET) --out results/cifar_18layer/cifar100-$(BUDGET)

cifar10-table1: $(STAMP)
	$(TRAIN) experiment=cifar_18layer data=cifar10 budget=$(BUDGET) $(ARGS)
	$(ANALYZE) cifar_18layer $(RUNS)/cifar_18layer/cifar10-$(BUDGET) --out results/cifar_18layer/cifar10-$(BUDGET)

imagenet-fig6: $(STAMP)
	$(TRAIN) experiment=imagenet_15layer_spp budget=$(BUDGET) $(ARGS)
	$(ANALYZE) imagenet_15layer_spp $(RUNS)/imagenet_15layer_spp/imagenet-$(BUDGET) --out results/imagenet_15layer_spp/imagenet-$(BUDGET)

# Every unit x every experiment on each experiment's headline metrics, paired against BASELINE;
# cells of different budgets or data never merge. Written into $(RUNS)/leaderboard; OUT=results/leaderboard
# refreshes the repository's own copy.
BASELINE ?= elu
leaderboard: OUT ?= $(RUNS)/leaderboard
leaderboard: $(STAMP)
	$(PY) -m elurepro.leaderboard $(RUNS) --out $(OUT) --baseline $(BASELINE)

all-figures: mnist-fig2 autoencoder-fig3 cifar100-fig4 cifar100-table1 cifar10-table1 imagenet-fig6

clean-venv:
	rm -rf $(VENV)
