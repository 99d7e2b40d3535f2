"""Energy per inference by the paper's method (Zhou et al. 2023, appendix; 45 nm figures).

    E = E_MAC * FLOPs(first conv) + E_SOP * sum_l SOPs(l),   E_MAC = 4.6 pJ, E_SOP = 0.9 pJ
    FLOPs(first conv) = MACs(first conv) * T          (the image is fed at every step)
    SOPs(l) = rate(input of l) * T * MACs(l)

where a "FLOP" is one multiply-accumulate (the counting that reproduces the paper's 8-512
figure, see ``paper_energy_mJ`` and docs/reports.md) and rate(x) is the mean value of x per
neuron per time step, measured on real samples: the fraction of neurons that spike for
binary maps; for the graded residual stream (values 0, 1, 2, ...) a value n counts as n
spikes. An event-input network's first conv reads spikes, so it is counted as SOPs.

``EnergyMeter`` is what a caller needs: the node names to record, an ``add`` per batch of
executor outputs (reference or float), and ``summary()``. It takes float and quantized graphs
alike: the synaptic layers come from ``flops.SynapticCounter``, whose handler table covers
every op of both levels.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np

from ..ir import Graph, IRError
from .flops import SynapticLayer, first_conv, synaptic_layers

E_MAC_PJ = 4.6   # 32-bit float MAC, 45 nm (Horowitz 2014), as the paper uses
E_SOP_PJ = 0.9   # 32-bit float add (one synaptic operation)

# Published energies (mJ per ImageNet inference, T = 4) and the one published SOP count.
PAPER_ENERGY_MJ = {"imagenet-8-384": 7.734, "imagenet-6-512": 9.417, "imagenet-8-512": 11.577,
                   "imagenet-10-512": 13.899, "imagenet-8-768": 21.477}
PAPER_SOPS_8_512 = 11.09e9


def paper_energy_mJ(sops, first_conv_macs: int, time_steps: int, *, two_flops_per_mac=False,
                    first_conv_times_t=True) -> Fraction:
    """The paper's formula in exact arithmetic, with the two counting choices it leaves open.

    ``sops`` may be a Fraction/int/str; pJ -> mJ is 1e-9."""
    flops = Fraction(first_conv_macs) * (2 if two_flops_per_mac else 1)
    if first_conv_times_t:
        flops *= time_steps
    pj = Fraction(str(E_MAC_PJ)) * flops + Fraction(str(E_SOP_PJ)) * Fraction(sops)
    return pj / 10 ** 9


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class RateMeter:
    """Mean value per neuron per step of chosen nodes, over batches of executor outputs."""

    def __init__(self, names: Iterable[str]):
        self.names = sorted(set(names))
        self.total: Dict[str, float] = {n: 0 for n in self.names}
        self.count: Dict[str, int] = {n: 0 for n in self.names}

    def add(self, outputs: Mapping[str, object]) -> None:
        for name in self.names:
            if name not in outputs:
                raise IRError(f"node '{name}' was not recorded; record {self.names}")
            a = _as_numpy(outputs[name])
            # integers stay exact (int64 sums); float outputs of the float model are 0/1 or
            # small integers as well, so their float64 sums are exact too
            exact = a.dtype.kind in "iub"
            self.total[name] += int(a.sum()) if exact else float(a.sum(dtype=np.float64))
            self.count[name] += int(a.size)

    def rates(self) -> Dict[str, float]:
        if any(c == 0 for c in self.count.values()):
            raise IRError("no samples measured: call add() with executor outputs first")
        return {n: self.total[n] / self.count[n] for n in self.names}


@dataclass
class LayerEnergy:
    name: str
    kind: str
    macs: int                  # per sample per step
    input_rate: Optional[float]  # None for the analog first conv
    ops: float                 # FLOPs (analog first conv, MACs * T) or SOPs per inference
    energy_pJ: float

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "macs_per_step": self.macs,
                "input_rate": self.input_rate,
                ("flops" if self.input_rate is None else "sops"): self.ops,
                "energy_pJ": self.energy_pJ}


def layer_energies(layers: List[SynapticLayer], rates: Mapping[str, float],
                   time_steps: int) -> List[LayerEnergy]:
    out = []
    for layer in layers:
        if layer.analog:
            flops = float(layer.macs * time_steps)
            out.append(LayerEnergy(layer.name, layer.kind, layer.macs, None, flops,
                                   E_MAC_PJ * flops))
            continue
        missing = [i for i in layer.inputs if i not in rates]
        if missing:
            raise IRError(f"layer '{layer.name}': no firing rate measured for its input(s) "
                          f"{missing}")
        rate = sum(rates[i] for i in layer.inputs)
        sops = rate * time_steps * layer.macs
        out.append(LayerEnergy(layer.name, layer.kind, layer.macs, rate, sops, E_SOP_PJ * sops))
    return out


def energy_summary(graph: Graph, rates: Mapping[str, float]) -> dict:
    """``{"energy_mJ", "sops", "flops_first_conv", ...}`` per inference from measured rates."""
    layers = synaptic_layers(graph)
    time_steps = graph.time_steps
    per_layer = layer_energies(layers, rates, time_steps)
    first = first_conv(layers)
    analog = [e for e in per_layer if e.input_rate is None]
    flops_first = sum(e.ops for e in analog)
    sops = sum(e.ops for e in per_layer if e.input_rate is not None)
    mac_pj = E_MAC_PJ * flops_first
    sop_pj = E_SOP_PJ * sops
    return {"energy_mJ": (mac_pj + sop_pj) * 1e-9, "sops": sops,
            "flops_first_conv": flops_first, "first_conv": first.name,
            "first_conv_macs_per_step": first.macs, "time_steps": time_steps,
            "mac_energy_mJ": mac_pj * 1e-9, "sop_energy_mJ": sop_pj * 1e-9,
            "e_mac_pJ": E_MAC_PJ, "e_sop_pJ": E_SOP_PJ,
            "layers": [e.as_dict() for e in per_layer]}


class EnergyMeter:
    """Energy per inference of ``graph`` from executor outputs of real samples.

        meter = EnergyMeter(graph)
        res = run_reference(graph, x, record=meter.record_names)   # or run_float(float_graph, ...)
        meter.add(res.outputs)
        meter.summary()   # {"energy_mJ": ..., "sops": ..., "flops_first_conv": ..., ...}
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.layers = synaptic_layers(graph)
        self.record_names = sorted({i for layer in self.layers if not layer.analog
                                    for i in layer.inputs})
        self.meter = RateMeter(self.record_names)

    def add(self, outputs: Mapping[str, object]) -> None:
        self.meter.add(outputs)

    def rates(self) -> Dict[str, float]:
        return self.meter.rates()

    def summary(self) -> dict:
        return energy_summary(self.graph, self.rates())
