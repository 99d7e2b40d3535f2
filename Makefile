# Two commands set everything up on a fresh machine (each creates .venv when missing):
#   make demo   - the main job on the shipped digits checkpoint and its bundled data set
#   make test   - the test suite
PY := .venv/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: venv demo test checkpoints checkpoint-digits checkpoint-fmnist

venv:
	@bash scripts/setup-venv.sh

demo: venv
	$(PY) -m spikformer_neuro.evaluate

test: venv
	$(PY) -m pytest -q

# Reproduce the shipped checkpoints (commands, times and accuracies are in the README).
checkpoints: checkpoint-digits checkpoint-fmnist

checkpoint-digits: venv
	.venv/bin/spikeform-train --config digits-tiny --dataset digits --epochs 60 --batch-size 32 \
	  --lr 2e-3 --seed 0 --threads 2 -q --out spikformer_neuro/checkpoints/digits-tiny.pth

checkpoint-fmnist: venv
	.venv/bin/spikeform-train --config fmnist-small --dataset fashion-mnist --epochs 12 \
	  --batch-size 64 --lr 2e-3 --seed 0 --threads 2 -q --out spikformer_neuro/checkpoints/fmnist-small.pth
