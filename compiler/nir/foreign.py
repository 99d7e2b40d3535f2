"""NIR graphs written by other toolchains (snntorch, norse, sinabs) -> the float-stage IR.

``foreign_nir_to_ir(graph, convention=..., time_steps=..., dataset=..., dt=..., source=...)``
returns a float graph ready for ``compiler.passes.float_passes`` and ``quantize``.

Mapping (docs/nir.md; the IR keeps the map layout (C, H, W)):
  Input (C, H, W) / (K,)       input, analog (static images repeated T times) or, for an
                               event data set, spikes; a vector is the map (K, 1, 1), and
                               the graph meta ``sample_shape`` [K] says that users give
                               [B, K] samples ([B, T, K] spike trains)
  Affine / Linear on (K,)      conv2d 1x1 over (K, 1, 1)
  Flatten (C, H, W) + Affine   conv2d with kernel (H, W) over (C, H, W): torch's row-major
                               flatten order is the kernel's (c, y, x) order
  Conv2d                       conv2d (dilation 1; 'valid'/'same' padding resolved)
  LIF                          lif with the convention's tau, r, spike_if (conventions.py);
                               v_leak = v_reset = 0 and one value per population required
  CubaLIF                      lif, only when the synapse copies its input each step
  SumPool2d (+ Threshold)      sumpool2d (+ threshold: NIR's strict ``> t`` on integer window
                               sums is ``>= floor(t) + 1``)
  Output                       the last LIF's spikes -> token_time_mean -> identity affine
                               -> output: the prediction is the argmax of spike counts
Anything else (IF, LI, Delay, Scale, AvgPool2d, nested graphs, recurrent edges, ...) raises
an IRError naming the node and what is missing.

One ``node_<NIR type>`` handler per supported NIR node type (the list in the "not supported"
error is read from them). The handlers emit IR nodes; whether a value is binary spikes is the
op's registry fact (``compiler.ops.OPS[op].emits_spikes``), and ``Graph.validate`` checks the
finished graph against the registry (ops, params, attributes and their types).
Wrong or missing options (``time_steps``, ``nir_convention``, ``nir_dt``) are
:class:`~compiler.ir.OptionError` naming the parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from spikformer_neuro.data.registry import EVENT_DATASETS   # samples are event frames

from ..encoding import SAMPLE_SHAPE
from ..ir import Graph, IRError, Node, OptionError
from ..layout import pair
from ..ops import FLOAT, OPS
from .conventions import Convention, get_convention, uniform


@dataclass
class _Value:
    """What a NIR node outputs, in IR terms: the IR node producing it and its IR shape.
    ``flat_of``: set when the NIR value is the flattening of this (C, H, W) IR map."""

    ir_name: str
    shape: Tuple[int, ...]
    binary: bool = False                   # spikes (the op's registry says it emits them)
    integer: bool = False                  # integer-valued (window sums of spikes)
    flat_of: Optional[Tuple[int, ...]] = None

    @property
    def size(self) -> int:
        return int(np.prod(self.flat_of or self.shape))


def _array(value) -> np.ndarray:
    """numpy view of a NIR field (nodes built in memory may hold torch tensors)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _nir_pair(value, where: str, field: str) -> Tuple[int, int]:
    """A NIR int-or-pair field (an array of 1 or 2 integral numbers) as ``(h, w)``."""
    arr = _array(value).ravel()
    if arr.size not in (1, 2) or not np.all(arr == np.round(arr)):
        raise IRError(f"{where}: '{field}' must be an integer or a pair, got {value!r}")
    return pair([int(v) for v in arr] if arr.size == 2 else int(arr[0]), where, field)


class _Importer:
    def __init__(self, graph, conv: Convention, dt: Optional[float], time_steps: int,
                 dataset: Optional[str], source: str):
        self.nir_graph = graph
        self.conv = conv
        self.dt = dt
        self.source = source
        self.g = Graph(meta={"model": f"nir:{Path(source).name}", "time_steps": int(time_steps),
                             "stage": FLOAT.value, "nir_convention": conv.name,
                             "nir_assumption": conv.assumption,
                             **({"dataset": dataset} if dataset else {}),
                             **({"nir_dt": dt} if dt is not None else {})})
        self.encoding = "spikes" if dataset in EVENT_DATASETS else "analog"
        self.values: Dict[str, _Value] = {}
        self.used_names = set(graph.nodes)

    def where(self, name: str) -> str:
        node = self.nir_graph.nodes[name]
        return f"{self.source}: NIR node '{name}' ({type(node).__name__})"

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used_names:
            i += 1
            name = f"{base}_{i}"
        self.used_names.add(name)
        return name

    # -- graph structure -----------------------------------------------------------------------
    def order(self) -> Tuple[List[str], Dict[str, List[str]]]:
        """Nodes in topological order (ties in file order) and each node's sources."""
        import nir

        nodes = self.nir_graph.nodes
        preds: Dict[str, List[str]] = {n: [] for n in nodes}
        for edge in self.nir_graph.edges:
            src, dst = edge[0], edge[1]
            for end in (src, dst):
                if end not in nodes:
                    raise IRError(f"{self.source}: edge {src!r} -> {dst!r} names node {end!r}, "
                                  "which is not in the graph (nested-graph ports such as "
                                  "'sub.input' are not supported)")
            preds[dst].append(src)
        for name, node in nodes.items():
            if isinstance(node, nir.NIRGraph):
                raise IRError(f"{self.where(name)}: nested graphs (snntorch's RLeaky/RSynaptic, "
                              "recurrent cells) are not supported; only feed-forward graphs "
                              "of stock nodes are")
        indeg = {n: len(p) for n, p in preds.items()}
        ready = [n for n in nodes if indeg[n] == 0]
        out: List[str] = []
        succ: Dict[str, List[str]] = {n: [] for n in nodes}
        for dst, ps in preds.items():
            for p in ps:
                succ[p].append(dst)
        position = {n: i for i, n in enumerate(nodes)}
        while ready:
            ready.sort(key=position.get)
            n = ready.pop(0)
            out.append(n)
            for s in succ[n]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
        if len(out) != len(nodes):
            stuck = sorted(set(nodes) - set(out), key=position.get)
            raise IRError(f"{self.source}: recurrent edges (a cycle through NIR nodes "
                          f"{stuck}) are not supported; the IR is feed-forward")
        return out, preds

    # -- the walk --------------------------------------------------------------------------------
    def run(self) -> Graph:
        import nir

        order, preds = self.order()
        inputs = [n for n in order if isinstance(self.nir_graph.nodes[n], nir.Input)]
        outputs = [n for n in order if isinstance(self.nir_graph.nodes[n], nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise IRError(f"{self.source}: needs exactly one Input and one Output node, found "
                          f"inputs {inputs} and outputs {outputs}")
        for name in order:
            node = self.nir_graph.nodes[name]
            kind = type(node).__name__
            srcs = [self.values[p] for p in preds[name]]
            if not isinstance(node, nir.Input) and not srcs:
                raise IRError(f"{self.where(name)}: has no incoming edge")
            handler = getattr(self, f"node_{kind}", None)
            if handler is None:
                raise IRError(f"{self.where(name)}: node type {kind} is not supported; "
                              f"supported: {', '.join(supported_node_types())} (docs/nir.md "
                              "has the conditions)")
            self.values[name] = handler(name, node, srcs)
        return self.g.validate()

    def add(self, name: str, op: str, inputs: List[_Value], shape, params=None,
            **attrs) -> _Value:
        """Add an IR node; its value is binary when the op emits spikes (the registry)."""
        node = self.g.add(Node(name, op, [v.ir_name for v in inputs],
                               tuple(int(s) for s in shape), params or {}, attrs))
        return _Value(name, node.shape, binary=OPS[op].emits_spikes(attrs))

    def single_map(self, name: str, srcs: List[_Value], what: str) -> _Value:
        if len(srcs) != 1:
            raise IRError(f"{self.where(name)}: {what} takes one input, got {len(srcs)} edges")
        return srcs[0]

    def maps(self, name: str, srcs: List[_Value]) -> Tuple[int, ...]:
        """Shape of the summed inputs (NIR sums several incoming edges)."""
        shapes = {s.shape for s in srcs}
        if any(s.flat_of for s in srcs):
            raise IRError(f"{self.where(name)}: a Flatten of a {srcs[0].flat_of} map must be "
                          "followed by an Affine/Linear layer")
        if len(shapes) != 1:
            raise IRError(f"{self.where(name)}: incoming edges have different shapes "
                          f"{sorted(shapes)}; NIR sums them, so they must agree")
        return srcs[0].shape

    # -- node types ----------------------------------------------------------------------------
    def node_Input(self, name, node, srcs) -> _Value:
        shape = tuple(int(s) for s in _array(node.input_type["input"]).ravel())
        if len(shape) == 1:
            # a vector: the map (K, 1, 1) in the IR; users give [B, K] (compiler.encoding)
            self.g.meta[SAMPLE_SHAPE] = [shape[0]]
            shape = (shape[0], 1, 1)
        if len(shape) != 3 or min(shape) < 1:
            raise IRError(f"{self.where(name)}: input shape {list(shape)} is neither a vector "
                          "(K,) nor an image (C, H, W)")
        return self.add(name, "input", [], shape, encoding=self.encoding)

    def _dense(self, name, node, srcs, bias) -> _Value:
        src = self.single_map(name, srcs, "an Affine/Linear layer")
        w = _array(node.weight).astype(np.float64)
        if w.ndim != 2 or w.shape[1] != src.size:
            raise IRError(f"{self.where(name)}: weight {list(w.shape)} does not take an input "
                          f"of {src.size} values")
        c, h, wd = src.flat_of or src.shape
        if src.flat_of is None and (h, wd) != (1, 1):
            raise IRError(f"{self.where(name)}: an Affine/Linear needs a vector input; the "
                          f"input is a {src.shape} map (is a Flatten missing?)")
        weight = w.reshape(w.shape[0], c, h, wd)   # row-major: torch's flatten order
        params = {"weight": weight}
        if bias is not None:
            b = _array(bias).astype(np.float64).ravel()
            if b.shape != (w.shape[0],):
                raise IRError(f"{self.where(name)}: bias has {b.size} values for "
                              f"{w.shape[0]} outputs")
            params["bias"] = b
        return self.add(name, "conv2d", [src], (w.shape[0], 1, 1), params,
                        stride=[1, 1], padding=[0, 0], groups=1)

    def node_Affine(self, name, node, srcs) -> _Value:
        return self._dense(name, node, srcs, node.bias)

    def node_Linear(self, name, node, srcs) -> _Value:
        return self._dense(name, node, srcs, None)

    def node_Flatten(self, name, node, srcs) -> _Value:
        src = self.single_map(name, srcs, "Flatten")
        out_type = getattr(node, "output_type", {}).get("output")
        out = None if out_type is None else tuple(int(s) for s in _array(out_type).ravel())
        whole = (out == (src.size,)) if out else (
            int(node.start_dim) == 0 and int(node.end_dim) in (-1, len(src.shape) - 1))
        if not whole:
            raise IRError(f"{self.where(name)}: only a Flatten of the whole sample into one "
                          f"vector is supported (input {src.shape}, start_dim "
                          f"{node.start_dim}, end_dim {node.end_dim})")
        if src.shape[1:] == (1, 1):
            return src                               # a vector stays a vector
        return _Value(src.ir_name, (src.size, 1, 1), src.binary, src.integer, src.shape)

    def node_Conv2d(self, name, node, srcs) -> _Value:
        shape = self.maps(name, srcs)
        where = self.where(name)
        w = _array(node.weight).astype(np.float64)
        groups = int(node.groups)
        if w.ndim != 4 or w.shape[1] * groups != shape[0]:
            raise IRError(f"{where}: weight {list(w.shape)} with groups={groups} does not take "
                          f"{shape[0]} input channels")
        if _nir_pair(node.dilation, where, "dilation") != (1, 1):
            raise IRError(f"{where}: dilation {node.dilation} is not supported (Loihi convs "
                          "and the IR have no dilation); dilation must be 1")
        stride = _nir_pair(node.stride, where, "stride")
        kh, kw = w.shape[2:]
        if isinstance(node.padding, str):
            if node.padding == "valid":
                padding = (0, 0)
            elif node.padding == "same" and stride == (1, 1) and kh % 2 and kw % 2:
                padding = (kh // 2, kw // 2)
            else:
                raise IRError(f"{where}: padding {node.padding!r} with kernel {(kh, kw)} and "
                              f"stride {stride} is not supported (needs symmetric padding)")
        else:
            padding = _nir_pair(node.padding, where, "padding")
        oh = (shape[1] + 2 * padding[0] - kh) // stride[0] + 1
        ow = (shape[2] + 2 * padding[1] - kw) // stride[1] + 1
        if oh < 1 or ow < 1:
            raise IRError(f"{where}: kernel {(kh, kw)} does not fit the {shape} input")
        params = {"weight": w}
        if node.bias is not None:
            b = _array(node.bias).astype(np.float64).ravel()
            if b.size == w.shape[0]:
                params["bias"] = b
            elif b.size != 1 or b[0] != 0:   # NIR's default bias is a scalar 0
                raise IRError(f"{where}: bias has {b.size} values for {w.shape[0]} channels")
        return self.add(name, "conv2d", srcs, (w.shape[0], oh, ow), params,
                        stride=list(stride), padding=list(padding), groups=groups)

    def _lif(self, name, node, srcs, tau, r, extra_gain: float = 1.0, kind="LIF") -> _Value:
        shape = self.maps(name, srcs)
        where = self.where(name)
        size = int(np.prod(shape))
        for field in ("v_leak", "v_reset"):
            arr = getattr(node, field, None)
            if arr is not None and np.any(_array(arr) != 0):
                raise IRError(f"{where}: {field} must be 0 (the IR LIF leaks to 0 and resets to "
                              f"0); found {float(np.abs(_array(arr)).max()):.6g}")
        for field in ("v_threshold", "v_leak", "v_reset"):
            arr = getattr(node, field, None)
            if arr is not None and _array(arr).size not in (1, size):
                raise IRError(f"{where}: '{field}' has {_array(arr).size} values for "
                              f"{size} neurons")
        try:
            theta = uniform(name, "v_threshold", _array(node.v_threshold))
            step = self.conv.lif(name, _array(tau), _array(r) * extra_gain, self.dt,
                                 dict(node.metadata or {}), kind)
        except OptionError as e:   # the convention names the node; add the file
            raise OptionError(f"{self.source}: {e}", option=e.option) from None
        except IRError as e:
            raise IRError(f"{self.source}: {e}") from None
        if not step.tau >= 1.0:
            raise OptionError(f"{where}: tau/dt = {step.tau:.6g} time steps; forward Euler "
                              "needs at least one step (is the time step nir_dt right?)",
                              option="nir_dt")
        if not theta > 0:
            raise IRError(f"{where}: v_threshold {theta:.6g} must be > 0")
        return self.add(name, "lif", srcs, shape, **step.attrs(theta))

    def node_LIF(self, name, node, srcs) -> _Value:
        return self._lif(name, node, srcs, node.tau, node.r)

    def node_CubaLIF(self, name, node, srcs) -> _Value:
        try:
            tau_syn = uniform(name, "tau_syn", _array(node.tau_syn))
            w_in = uniform(name, "w_in", _array(node.w_in))
        except IRError as e:
            raise IRError(f"{self.source}: {e}") from None
        dt = self.dt if self.dt is not None else 1.0
        if not self.conv.synapse_is_instant(tau_syn, dt):
            raise IRError(f"{self.where(name)}: the synaptic current has memory (tau_syn "
                          f"{tau_syn:.6g}, dt {dt}); only a CubaLIF whose synapse copies its "
                          "input each step (snntorch alpha = 0) reduces exactly to the IR LIF")
        return self._lif(name, node, srcs, node.tau_mem, node.r, extra_gain=w_in,
                         kind="CubaLIF")

    def node_SumPool2d(self, name, node, srcs) -> _Value:
        shape = self.maps(name, srcs)
        where = self.where(name)
        k, s, p = (_nir_pair(getattr(node, f), where, f)
                   for f in ("kernel_size", "stride", "padding"))
        if k[0] != k[1] or s[0] != s[1] or p[0] != p[1]:
            raise IRError(f"{where}: only square pools are supported (kernel {k}, stride {s}, "
                          f"padding {p})")
        oh = (shape[1] + 2 * p[0] - k[0]) // s[0] + 1
        ow = (shape[2] + 2 * p[1] - k[1]) // s[1] + 1
        value = self.add(name, "sumpool2d", srcs, (shape[0], oh, ow), kernel=k[0], stride=s[0],
                         padding=p[0])
        value.integer = all(v.binary or v.integer for v in srcs)
        return value

    def node_Threshold(self, name, node, srcs) -> _Value:
        src = self.single_map(name, srcs, "Threshold")
        theta = float(np.asarray(_array(node.threshold)).ravel()[0])
        if not (np.all(_array(node.threshold) == theta) and src.integer
                and self.g[src.ir_name].op == "sumpool2d"):
            raise IRError(f"{self.where(name)}: only a uniform Threshold after a SumPool2d of "
                          "spikes is supported (the max-pool pattern)")
        # NIR fires on x > theta; window sums are integers: x > theta <=> x >= floor(theta)+1
        return self.add(name, "threshold", [src], src.shape,
                        threshold=float(math.floor(theta) + 1))

    def node_Output(self, name, node, srcs) -> _Value:
        src = self.single_map(name, srcs, "Output")
        if not src.binary or src.flat_of is not None or src.shape[1:] != (1, 1):
            raise IRError(f"{self.where(name)}: the output must be a vector of spikes (class "
                          f"scores = spike counts), got {'spikes' if src.binary else 'values'} "
                          f"of shape {src.flat_of or src.shape}")
        k = src.shape[0]
        readout = self.add(self.fresh("readout"), "token_time_mean", [src], (k,))
        head = self.add(self.fresh("head"), "affine", [readout], (k,), {"weight": np.eye(k)})
        out = self.add(name, "output", [head], (k,))
        self.g.meta["num_classes"] = k
        return out


def supported_node_types() -> List[str]:
    """The NIR node types the importer reads: its ``node_<type>`` handlers, in their order."""
    return [k[len("node_"):] for k, v in vars(_Importer).items()
            if k.startswith("node_") and callable(v)]


def foreign_nir_to_ir(graph, *, convention: str, time_steps: int, dataset: Optional[str] = None,
                      dt: Optional[float] = None, source: str = "<nir>") -> Graph:
    """A NIR graph from another toolchain -> a float-stage IR graph (see the module docstring).

    ``convention``: "snntorch", "norse", "sinabs" or "spikeform" (compiler/nir/conventions.py);
    ``time_steps``: steps per sample (NIR files do not say); ``dataset``: recorded in the
    graph meta for calibration and verification; ``dt``: overrides the convention's time
    step; ``source``: the file name, for messages and the model name.
    """
    if isinstance(time_steps, bool) or not isinstance(time_steps, (int, np.integer)) \
            or time_steps < 1:
        raise OptionError(f"{source}: time_steps must be a positive integer, got "
                          f"{time_steps!r}", option="time_steps")
    conv = get_convention(convention)
    return _Importer(graph, conv, conv.dt(dt), int(time_steps), dataset, source).run()
