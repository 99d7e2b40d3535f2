"""The paper's energy figures checked against its own formula, and the FLOPs of every paper
configuration counted from the model itself (``python -m compiler.reports.paper`` prints the
tables of docs/reports.md).

Published figures are rounded, so a counting choice is *consistent* with them when the
interval of energies its rounded inputs allow overlaps the interval the rounded result
stands for; all of it in exact rational arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Tuple

import torch

from spikformer_neuro.model import build_model, count_parameters
from spikformer_neuro.zoo import config_names, get_config, paper_parameter_count

from ..frontend import model_to_ir
from .energy import E_MAC_PJ, E_SOP_PJ, PAPER_ENERGY_MJ, PAPER_SOPS_8_512, paper_energy_mJ
from .flops import first_conv, synaptic_layers

#: the Spikformer paper's configurations (the spike-driven family's paper settings max-pool
#: real values after SPS stage 3: the frontend refuses them)
PAPER_CONFIGS = [n for n in config_names() if get_config(n).description.startswith("paper:")
                 and get_config(n).family == "spikformer"]


@dataclass(frozen=True)
class ZooFlops:
    name: str
    params: int
    time_steps: int
    first_conv_macs: int          # per sample per step
    other_macs: Dict[str, int]    # per kind ("conv", "linear", "attention", "head"), per step

    @property
    def total_other(self) -> int:
        return sum(self.other_macs.values())


def zoo_flops(name: str) -> ZooFlops:
    """Count the configuration's MACs from its model (random weights; counts need shapes only)."""
    cfg = get_config(name)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    layers = synaptic_layers(model_to_ir(model))
    first = first_conv(layers)
    other: Dict[str, int] = {}
    for layer in layers:
        if layer is not first:
            other[layer.kind] = other.get(layer.kind, 0) + layer.macs
    return ZooFlops(name, count_parameters(model), cfg.time_steps, first.macs, other)


def _rounding_interval(value: str) -> Tuple[Fraction, Fraction]:
    """[lo, hi) of the reals that round to ``value`` (a decimal string) at its precision."""
    digits = len(value.split(".")[1]) if "." in value else 0
    half = Fraction(1, 2 * 10 ** digits)
    return Fraction(value) - half, Fraction(value) + half


COUNTINGS = {  # name -> (2 FLOPs per MAC, first conv x T)
    "MACs x T": (False, True), "MACs (no T)": (False, False),
    "2 MACs x T": (True, True), "2 MACs (no T)": (True, False),
}


def counting_check(first_conv_macs: int, time_steps: int = 4, sops_g: str = "11.09",
                   energy_mj: str = "11.577") -> Dict[str, dict]:
    """Which counting of the first conv reproduces the paper's 8-512 energy from its SOPs."""
    s_lo, s_hi = _rounding_interval(sops_g)
    e_lo, e_hi = _rounding_interval(energy_mj)
    out = {}
    for name, (two, times_t) in COUNTINGS.items():
        lo = paper_energy_mJ(s_lo * 10 ** 9, first_conv_macs, time_steps, two_flops_per_mac=two,
                             first_conv_times_t=times_t)
        hi = paper_energy_mJ(s_hi * 10 ** 9, first_conv_macs, time_steps, two_flops_per_mac=two,
                             first_conv_times_t=times_t)
        out[name] = {"energy_mJ_from": lo, "energy_mJ_to": hi,
                     "consistent": lo < e_hi and e_lo < hi}
    return out


def implied(f: ZooFlops) -> dict:
    """What the published energy implies, with the counting that reproduces 8-512 (MACs x T)."""
    e_pj = Fraction(str(PAPER_ENERGY_MJ[f.name])) * 10 ** 9
    first_pj = Fraction(str(E_MAC_PJ)) * f.first_conv_macs * f.time_steps
    sops = (e_pj - first_pj) / Fraction(str(E_SOP_PJ))
    return {"energy_mJ": PAPER_ENERGY_MJ[f.name], "first_conv_mJ": float(first_pj) * 1e-9,
            "implied_sops": float(sops),
            "implied_mean_rate": float(sops / (f.time_steps * f.total_other))}


def per_layer(name: str = "imagenet-8-512") -> str:
    """MACs per layer of one configuration (the SPS, the first block, the head)."""
    cfg = get_config(name)
    torch.manual_seed(0)
    layers = synaptic_layers(model_to_ir(build_model(cfg).eval()))
    lines = [f"| {name} layer | kind | MACs per sample per step |", "|---|---|---|"]
    for layer in layers:
        if not layer.name.startswith("blocks.") or layer.name.startswith("blocks.0."):
            lines.append(f"| {layer.name} | {layer.kind} | {layer.macs:,} |")
    lines.append(f"| (blocks 1..{cfg.depth - 1}: as block 0) | | |")
    return "\n".join(lines)


def tables() -> str:
    rows: List[ZooFlops] = [zoo_flops(n) for n in PAPER_CONFIGS]
    lines = ["| configuration | params (M), paper | T | first conv MACs/step | convs | linears "
             "| attention (Q.Kᵀ + ·V) | head | other MACs/step | other MACs × T |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in rows:
        o = f.other_macs
        paper = paper_parameter_count(f.name)
        lines.append(f"| {f.name} | {f.params / 1e6:.2f} ({paper if paper else '–'}) | "
                     f"{f.time_steps} | {f.first_conv_macs:,} | {o.get('conv', 0):,} | "
                     f"{o.get('linear', 0):,} | {o.get('attention', 0):,} | {o.get('head', 0):,} | "
                     f"{f.total_other:,} | {f.total_other * f.time_steps / 1e9:.3f} G |")
    lines += ["", "| configuration | paper energy (mJ) | 4.6 pJ × first-conv MACs × T (mJ) | "
              "implied SOPs | implied mean input rate |", "|---|---|---|---|---|"]
    for f in rows:
        if f.name in PAPER_ENERGY_MJ:
            i = implied(f)
            lines.append(f"| {f.name} | {i['energy_mJ']} | {i['first_conv_mJ']:.4f} | "
                         f"{i['implied_sops'] / 1e9:.3f} G | {i['implied_mean_rate']:.3f} |")
    f512 = next(f for f in rows if f.name == "imagenet-8-512")
    lines += ["", f"8-512 check, SOPs = {PAPER_SOPS_8_512 / 1e9} G (±0.005 G), first conv "
              f"{f512.first_conv_macs:,} MACs, T = 4; published 11.577 mJ (±0.0005):", "",
              "| counting of the first conv | energy range (mJ) | consistent |", "|---|---|---|"]
    for name, c in counting_check(f512.first_conv_macs).items():
        lines.append(f"| {name} | {float(c['energy_mJ_from']):.4f} – "
                     f"{float(c['energy_mJ_to']):.4f} "
                     f"| {'yes' if c['consistent'] else 'no'} |")
    return "\n".join(lines + ["", per_layer()])


if __name__ == "__main__":
    print(tables())
