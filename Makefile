# The two commands a user needs: `make demo` (the main job; runs `make setup-python` first) and `make test` (every test;
# runs `make setup` first).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup setup-python setup-tools images release demo test bench clean

help:
	@echo "make demo   - set up, start a local MLflow server, train YOLOv5 on a synthetic dataset, print the run"
	@echo "make test   - set up, then run every test (pytest, hadolint, chart and cluster tests)"
	@echo "make setup  - install everything into .venv/ and .tools/ (idempotent)"
	@echo "make bench  - run the benchmarks under bench/ and write bench/RESULTS.md"
	@echo "make images - build the server and trainer images (buildah or docker); REGISTRY=ghcr.io/you PUSH=1 pushes them,"
	@echo "              TORCH_VARIANT=cuda builds the trainer with PyPI's CUDA torch (tag <appVersion>-cuda),"
	@echo "              TORCH_CPU_INDEX=URL takes the CPU torch from a mirror of download.pytorch.org/whl/cpu"
	@echo "make release REGISTRY=ghcr.io/you [PUSH=1] - images (server, CPU and CUDA trainer) + packaged (signed) chart,"
	@echo "              pinned by digest; TRAINER_VARIANTS=cuda releases one trainer build; PUSH=1 pushes"
	@echo "              both to the OCI registry, signs the images (COSIGN_KEY) and prints the helm install line"

setup:
	@bash ci/setup.sh

setup-python:
	@bash ci/setup-python.sh

setup-tools:
	@bash ci/install-tools.sh

images:
	@REGISTRY=$(REGISTRY) TORCH_VARIANT=$(TORCH_VARIANT) TORCH_CPU_INDEX=$(TORCH_CPU_INDEX) bash ci/images.sh $(if $(filter 1,$(PUSH)),push,build)

release:
	@REGISTRY=$(REGISTRY) PUSH=$(filter 1,$(PUSH)) TORCH_VARIANT=$(TORCH_VARIANT) TRAINER_VARIANTS="$(TRAINER_VARIANTS)" bash ci/release.sh

demo: setup-python
	@KEEP_SERVER=$(KEEP_SERVER) bash ci/demo.sh

test: setup
	@bash ci/test.sh

bench: setup
	@bash bench/run.sh

clean:
	rm -rf .work runs
