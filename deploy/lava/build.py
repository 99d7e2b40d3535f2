"""Instantiate a :class:`~deploy.lava.stages.LavaNetwork` as fresh Lava processes.

A Lava process graph compiles and runs once (its runtime cannot be restarted
after ``stop``), and the input source and the readout depend on the stream, so
every run builds its own processes from the (reusable) plan. Each stage's
:class:`~deploy.lava.stages.StageKind` names its process class and output port.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Tuple

import numpy as np

from lava.magma.core.process.process import AbstractProcess

from loihi_numerics import fixed_point as fx

from deploy.lava.io.process import Readout, Tap
from deploy.lava.stages import LavaNetwork, SourceEncoding, Stage, StageKind
from deploy.lava.timing import total_steps


@dataclass
class BuiltNetwork:
    network: LavaNetwork
    processes: Dict[str, AbstractProcess]
    readout: Readout
    taps: Dict[str, Tap] = field(default_factory=dict)   # node -> tap
    num_samples: int = 0
    num_steps: int = 0


def stream_data(network: LavaNetwork, x_seq: np.ndarray, num_steps: int) -> np.ndarray:
    """[T, B, C, H, W] input -> the source's ``(W, H, C, num_steps)`` buffer: sample s's
    step t (1-based) at Lava step s*T + t, zeros after the stream. Integers (int32) for a
    fixed-point network, float64 for a floating-point one (``network.numeric``)."""
    x = np.asarray(x_seq)
    T = network.time_steps
    if x.ndim != 5 or x.shape[0] != T or tuple(x.shape[2:]) != tuple(network.input_shape):
        raise ValueError(f"input must be the encoded sequence [T={T}, B, "
                         f"{', '.join(map(str, network.input_shape))}]; got {list(x.shape)}")
    if network.numeric == "float":
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError("input holds NaN or infinite values")
        dtype = np.float64
    else:
        if x.dtype.kind not in "iub":
            if not np.array_equal(x, np.round(x)):
                raise ValueError("input must hold integers (use compiler.encoding.encode_integer)")
        x = x.astype(np.int64)
        dtype = np.int32
    if network.input_encoding is SourceEncoding.SPIKES and ((x != 0) & (x != 1)).any():
        raise ValueError("event input must be binary")
    if dtype == np.int32 and x.size and np.abs(x).max() >= 2 ** 23:
        raise ValueError("graded input exceeds the 24-bit payload")
    b = x.shape[1]
    frames = x.transpose(1, 0, 2, 3, 4).reshape((b * T,) + x.shape[2:])   # [B*T, C, H, W]
    data = np.zeros(fx.lava_shape(network.input_shape) + (num_steps,), dtype=dtype)
    data[..., :b * T] = np.moveaxis(fx.to_lava_layout(frames), 0, -1)   # [W, H, C, B*T]
    return data


def _make(stage: Stage, data: np.ndarray, num_samples: int) -> AbstractProcess:
    kind = stage.kind
    if kind is StageKind.SOURCE:
        return kind.process(data=data)             # RingBuffer takes no name
    params = stage.constructor_args()
    if kind is StageKind.READOUT:
        params["num_samples"] = num_samples
    return kind.process(**params, name=stage.name)


def build(network: LavaNetwork, x_seq: np.ndarray, probes: Iterable[str] = ()) -> BuiltNetwork:
    """Processes for streaming ``x_seq`` ([T, B, C, H, W] ints) through ``network``,
    with a :class:`Tap` on each node named in ``probes``."""
    probes = list(dict.fromkeys(probes))
    unknown = [p for p in probes if p not in network.probe_names()]
    if unknown:
        raise ValueError(f"cannot probe {unknown}; probe-able nodes: {network.probe_names()}")
    num_samples = int(np.asarray(x_seq).shape[1]) if np.ndim(x_seq) == 5 else 0
    if num_samples < 1:
        raise ValueError("need at least one sample: input [T, B>=1, C, H, W]")
    num_steps = total_steps(num_samples, network.time_steps, network.lags)
    data = stream_data(network, x_seq, num_steps)

    procs: Dict[str, AbstractProcess] = {st.name: _make(st, data, num_samples)
                                         for st in network.stages.values()}
    for st in network.stages.values():
        for src, port in st.inputs:
            out = getattr(procs[src], network.stages[src].kind.out_port)
            out.connect(getattr(procs[st.name], port))
    taps = {}
    for node in probes:
        st = network.stages[network.providers[node]]
        tap = Tap(shape=st.shape, buffer_size=num_steps, name=f"tap:{node}")
        getattr(procs[st.name], st.kind.out_port).connect(tap.a_in)
        taps[node] = tap
    return BuiltNetwork(network, procs, procs[network.readout], taps, num_samples, num_steps)


def realign(network: LavaNetwork, node: str, recorded: np.ndarray, num_samples: int) -> np.ndarray:
    """A tap's per-Lava-step record ``[steps, W, H, C]`` -> algorithmic ``[T, B, C, H, W]``
    (int64 for a fixed-point network, float64 for a floating-point one)."""
    T, lag = network.time_steps, network.lags[node]
    rec = recorded[lag:lag + num_samples * T]
    if rec.shape[0] != num_samples * T:
        raise ValueError(f"tap '{node}' recorded {recorded.shape[0]} steps; need "
                         f"{lag + num_samples * T}")
    frames = fx.from_lava_layout(rec)                                   # [B*T, C, H, W]
    frames = frames.reshape((num_samples, T) + frames.shape[1:])
    dtype = np.float64 if network.numeric == "float" else np.int64
    return np.ascontiguousarray(frames.transpose(1, 0, 2, 3, 4)).astype(dtype)


def stream_steps(network: LavaNetwork, num_samples: int) -> Tuple[int, int]:
    """(Lava steps for the stream, of which pipeline drain)."""
    return total_steps(num_samples, network.time_steps, network.lags), network.max_lag
