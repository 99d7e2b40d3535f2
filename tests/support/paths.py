"""Paths the tests share: the repository root, the shipped checkpoints, the test fixtures."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "spikformer_neuro" / "checkpoints"
DIGITS_CKPT = CHECKPOINTS / "digits-tiny.pth"
FIXTURES = ROOT / "tests" / "fixtures"
NIR_FIXTURES = FIXTURES / "nir"
SDT_DIGITS_CKPT = CHECKPOINTS / "sdt-digits-tiny.pth"
