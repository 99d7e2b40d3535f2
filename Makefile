# Two commands set everything up on a fresh machine (each creates .venv when missing):
#   make demo   - the main job on the shipped digits checkpoint and its bundled data set
#   make test   - the test suite
PY := .venv/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: venv demo test checkpoints checkpoint-digits checkpoint-fmnist \
	checkpoint-sdt-digits checkpoint-sdt-fmnist

venv:
	@bash scripts/setup-venv.sh

demo: venv
	.venv/bin/spikeform-compile spikformer_neuro/checkpoints/digits-tiny.pth --target lava-sim --samples 360 \
	  -o runs/digits-tiny.compiled

test: venv
	$(PY) -m pytest -q

# The benchmark suite (docs/benchmarks.md): prints the table, writes runs/bench/suite.json and
# runs/bench/scaling.png. BENCH_ARGS=--quick for the one-minute smoke run.
.PHONY: bench
bench: venv
	$(PY) -m benchmarks.suite $(BENCH_ARGS)

# Reproduce the shipped checkpoints (commands, times and accuracies are in the README):
# float training, then quantization-aware fine-tuning on the Loihi integer grid.
CKPT := spikformer_neuro/checkpoints
TRAIN := .venv/bin/spikeform-train --seed 0 --threads 2 -q --val-fraction 0

checkpoints: checkpoint-digits checkpoint-fmnist checkpoint-sdt-digits checkpoint-sdt-fmnist

checkpoint-digits: venv
	$(TRAIN) --config digits-tiny --dataset digits --epochs 60 --batch-size 32 --lr 2e-3 \
	  --out runs/digits-tiny.float.pth
	$(TRAIN) --init runs/digits-tiny.float.pth --qat --config digits-tiny --dataset digits \
	  --epochs 10 --lr 3e-4 --warmup-epochs 0 --out $(CKPT)/digits-tiny.pth

checkpoint-fmnist: venv
	$(TRAIN) --config fmnist-small --dataset fashion-mnist --epochs 6 --qat-from-epoch 4 \
	  --batch-size 64 --lr 2e-3 --out runs/fmnist-small.qat6.pth
	$(TRAIN) --init runs/fmnist-small.qat6.pth --qat --config fmnist-small --dataset fashion-mnist \
	  --epochs 2 --lr 3e-4 --warmup-epochs 0 --seed 1 --out $(CKPT)/fmnist-small.pth

# The spike-driven family (README, "Spike-driven Transformer"): chosen on a validation split.
# digits: the float run's final epoch (its 144-sample validation split ties early), then QAT.
SDT_TRAIN := .venv/bin/spikeform-train --seed 0 --threads 2 -q

checkpoint-sdt-digits: venv
	$(SDT_TRAIN) --config sdt-digits-tiny --dataset digits --epochs 100 --batch-size 32 \
	  --lr 2e-3 --out runs/sdt-digits-tiny.float.pth
	$(SDT_TRAIN) --init runs/sdt-digits-tiny.float.last.pth --qat --config sdt-digits-tiny \
	  --dataset digits --epochs 10 --batch-size 32 --lr 3e-4 --warmup-epochs 0 \
	  --out $(CKPT)/sdt-digits-tiny.pth

# fmnist: 5 float epochs, 7 more from there without augmentation (the small model underfits:
# training accuracy stayed below validation), 6 more at a lower rate, then three QAT epochs.
checkpoint-sdt-fmnist: venv
	$(SDT_TRAIN) --config sdt-fmnist-small --dataset fashion-mnist --epochs 5 --batch-size 64 \
	  --lr 2e-3 --out runs/sdt-fmnist-small.float.pth
	$(SDT_TRAIN) --init runs/sdt-fmnist-small.float.pth --config sdt-fmnist-small \
	  --dataset fashion-mnist --epochs 7 --batch-size 64 --lr 1e-3 --warmup-epochs 0 \
	  --no-augment --out runs/sdt-fmnist-small.float2.pth
	$(SDT_TRAIN) --init runs/sdt-fmnist-small.float2.pth --config sdt-fmnist-small \
	  --dataset fashion-mnist --epochs 6 --batch-size 64 --lr 6e-4 --warmup-epochs 0 \
	  --no-augment --out runs/sdt-fmnist-small.float3.pth
	$(SDT_TRAIN) --init runs/sdt-fmnist-small.float3.pth --qat --config sdt-fmnist-small \
	  --dataset fashion-mnist --epochs 3 --batch-size 64 --lr 3e-4 --warmup-epochs 0 \
	  --no-augment --out $(CKPT)/sdt-fmnist-small.pth
