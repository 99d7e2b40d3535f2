"""Float IR (after ``float_passes``) -> a stock ``nir.NIRGraph`` in the spikeform dialect.

Every node is a stock NIR node that snntorch / norse / sinabs load (docs/nir.md has the table,
the conventions and what each toolchain ran); the encodings were chosen so that the most
toolchains can execute them:

- ``input`` -> ``Input`` (C, H, W); an analog input with ``mean``/``std`` adds a diagonal 1x1
  ``Conv2d`` ``<input>.normalize`` (weight diag(1/std), bias -mean/std) that its readers read.
- ``conv2d`` -> ``Conv2d``; ``affine`` -> ``Affine``.
- ``lif`` -> ``LIF`` with dt = 1: tau and r as in the IR, v_leak = v_reset = 0, the firing rule
  (``spike_if``) in metadata.
- ``threshold`` -> a memoryless ``LIF`` (tau = 1 step, r = 1: v = x each step, reset to 0) at
  ``ceil(t) - 0.5`` when every input is integer-valued (then NIR's strict ``>`` is our ``>=``
  exactly). No toolchain imports NIR's ``Threshold``; norse and snntorch import a LIF.
- ``sumpool2d`` -> ``SumPool2d`` when unpadded; with padding a ``Conv2d`` of diagonal all-ones
  kernels and zero bias (every toolchain's SumPool2d import drops the padding; a depthwise
  ``groups = C`` conv is read wrongly by NIR 1.0.8's type check, norse and snntorch).
- ``sum`` -> no node: each of its inputs gets an edge into each of its readers (NIR sums the
  edges into a node); the sum's name, order and shape travel in graph metadata.
- ``spiking_attention`` -> a nested ``NIRGraph`` (one Input, one Output: stock readers load it
  but cannot execute it) tagged with the op, the q/k/v roles, ``num_heads`` and ``scale``.
- ``token_time_mean`` -> ``Flatten`` (dims counted from the end, so batched readers flatten
  the right ones); over an (H, W) grid of more than one token, a ``SumPool2d``
  ``<name>.token_sum`` before it and a diagonal 1/(H W) ``Affine`` ``<name>.token_mean`` after
  it (no toolchain but snntorch imports ``AvgPool2d``). The mean over time is stated in
  metadata (the head is linear: averaging the per-step outputs over time gives the logits).
- ``output`` -> ``Output``.

``portable=True`` keeps only what stock consumers can execute: every node that is not
downstream of a node without stock semantics (spiking attention); the kept nodes read by a
left-out node become the fragment's outputs.

The handler table: ``_Exporter`` has one ``op_<name>`` handler per op of the float IR after the
float passes (``compiler.ops.ops_at(FLOAT, after_passes=True)``;
tests/test_compiler/nir/test_export.py asserts that none is missing). Each handler is marked with
:func:`writes`: the NIR node type(s) it may write under the IR node's name (None: no node, only
edges) and whether stock NIR consumers execute what the op means. Those marks are the only
description of the mapping: the portable cut (:func:`is_stock`) and the importer's type check
(:func:`nir_types_of`, compiler/nir/spikeform_import.py) read them.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

import numpy as np

from ..ir import Graph, IRError, Node, OptionError
from ..layout import pair
from ..ops import FLOAT, OPS, handled_ops
from . import dialect as d


def writes(nir_type: Optional[str], *alternatives: str, stock: bool = True) -> Callable:
    """Mark an ``_Exporter.op_<name>`` handler: the NIR node type it writes under the IR
    node's name (None: the op becomes edges only, like the residual ``sum``), the other types
    it writes for some nodes (``sumpool2d``: a Conv2d where padded), and whether a consumer
    of stock NIR semantics executes it (``stock=False``: left out by ``portable``)."""
    def mark(fn: Callable) -> Callable:
        fn.nir_type = nir_type
        fn.nir_types = (nir_type, *alternatives)
        fn.stock = stock
        return fn
    return mark


@dataclass
class ExportInfo:
    """What an export wrote: for the CLI summary and report."""

    ir_nodes: int
    nir_nodes: Dict[str, int]                     # NIR node type -> count (nested included)
    edges: int
    portable: bool
    fragment: bool = False
    outputs: List[str] = field(default_factory=list)
    left_out: List[str] = field(default_factory=list)   # fragment: IR nodes not exported
    blockers: List[str] = field(default_factory=list)   # fragment: why ("name (op)")

    def as_dict(self) -> dict:
        return {"ir_nodes": self.ir_nodes, "nir_nodes": dict(sorted(self.nir_nodes.items())),
                "edges": self.edges, "portable": self.portable, "fragment": self.fragment,
                "outputs": list(self.outputs), "left_out": list(self.left_out),
                "blockers": list(self.blockers)}


def _where(node: Node) -> str:
    return f"node '{node.name}' ({node.op})"


def _check_exportable(graph: Graph) -> None:
    graph.validate()
    if graph.level is not FLOAT:
        raise IRError(f"a {graph.level.value} graph cannot be exported to NIR: NIR export takes "
                      "the float IR, not the quantized one")
    for node in graph:
        if _handler(node.op) is None:
            removed_by = OPS[node.op].removed_by
            hint = (f"run compiler.passes.float_passes first ({removed_by} rewrites it away)"
                    if removed_by else "the NIR export has no mapping for this op")
            raise IRError(f"{_where(node)}: cannot be exported to NIR; {hint}")
        if "/" in node.name or not node.name:
            raise IRError(f"{_where(node)}: NIR (HDF5) node names cannot be empty or contain '/'")
        if node.op != "output" and not graph.consumers(node.name):
            raise IRError(f"{_where(node)}: nothing reads it; NIR would give it an output of its "
                          "own: remove dead nodes before exporting")


def _is_integer_valued(graph: Graph, node: Node) -> bool:
    """True when every value of ``node`` is an integer: spikes (by the registry), event
    counts, or window sums and residual sums of those."""
    if OPS[node.op].emits_spikes(node.attrs):
        return True
    if node.op == "input":
        return node.attrs.get("encoding") == "counts"
    return node.op in ("sumpool2d", "sum") and all(
        _is_integer_valued(graph, graph[i]) for i in node.inputs)


def _full(shape, value: float, dtype=np.float64) -> np.ndarray:
    return np.full(tuple(shape), float(value), dtype=dtype)


def _lif(shape, *, tau: float, r: float, v_threshold: float, metadata: dict):
    """A stock NIR LIF with per-neuron arrays (NIR asserts one shape for all of them)."""
    import nir
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, r), v_leak=_full(shape, 0.0),
                   v_threshold=_full(shape, v_threshold), v_reset=_full(shape, 0.0),
                   metadata=metadata)


def diagonal_ones(channels: int, kernel: Tuple[int, int]) -> np.ndarray:
    """(C, C, kh, kw) all-ones kernels on the channel diagonal: a per-channel window sum
    written as a dense conv (groups = 1), the only grouping every NIR reader gets right."""
    w = np.zeros((channels, channels, *kernel), dtype=np.float32)
    w[np.arange(channels), np.arange(channels)] = 1.0
    return w


class _Exporter:
    """One ``op_<name>`` handler per op of the float IR after the passes, each marked with
    :func:`writes` (the module docstring has the mapping)."""

    def __init__(self, graph: Graph, keep: List[str]):
        self.g = graph
        self.keep = keep
        self.kept: Set[str] = set(keep)
        self.nodes: Dict[str, object] = {}
        self.edges: List[Tuple[str, str]] = []
        # IR node -> the NIR node holding its value, where that is a helper after it
        self.value_of: Dict[str, str] = {}

    # -- names --------------------------------------------------------------------------------
    def add(self, name: str, nir_node) -> None:
        if name in self.nodes:
            raise IRError(f"NIR node name '{name}' is used twice (an IR node is named like a "
                          "helper node of another); rename it before exporting")
        self.nodes[name] = nir_node

    def sources(self, name: str) -> List[str]:
        """The NIR nodes whose summed outputs are the IR node ``name``'s output."""
        node = self.g[name]
        if nir_type_of(node.op) is None:   # edges only: the sources of its inputs
            return [s for i in node.inputs for s in self.sources(i)]
        return [self.value_of.get(name, name)]

    @staticmethod
    def normalized(node: Node) -> bool:
        return node.attrs.get("encoding") == "analog" and ("mean" in node.attrs
                                                           or "std" in node.attrs)

    def connect(self, srcs: List[str], dst: str, where: str) -> None:
        for s in srcs:
            if (s, dst) in self.edges:
                raise IRError(f"{where}: reads '{s}' more than once (directly or through a "
                              "residual sum); NIR edges cannot repeat, so this graph cannot be "
                              "exported")
            self.edges.append((s, dst))

    def connect_inputs(self, node: Node, dst: str) -> None:
        self.connect([s for i in node.inputs for s in self.sources(i)], dst, _where(node))

    # -- ops ----------------------------------------------------------------------------------
    def meta(self, node: Node, **extra) -> dict:
        md = d.node_metadata(node.name, node.op, node.inputs, node.shape, node.attrs, node.params)
        md.update({k: str(v) for k, v in extra.items()})
        return md

    def input_shape(self, node: Node) -> Tuple[int, ...]:
        return tuple(self.g[node.inputs[0]].shape)

    @writes("Input")
    def op_input(self, node: Node) -> None:
        import nir
        shape = np.array(node.shape, dtype=np.int64)
        self.add(node.name, nir.Input(input_type={"input": shape}, metadata=self.meta(node)))
        if not self.normalized(node):
            return
        where = _where(node)
        c = node.shape[0]
        mean = np.asarray(node.attrs.get("mean", [0.0] * c), dtype=np.float64).reshape(-1)
        std = np.asarray(node.attrs.get("std", [1.0] * c), dtype=np.float64).reshape(-1)
        if mean.shape != (c,) or std.shape != (c,):
            raise IRError(f"{where}: mean/std need {c} values (one per channel)")
        if not np.all(std != 0):
            raise IRError(f"{where}: std must be non-zero")
        name = node.name + d.NORMALIZE_SUFFIX
        self.value_of[node.name] = name
        # a diagonal 1x1 conv rather than a depthwise one: NIR 1.0.8's type check takes
        # weight.shape[1] as the input channels, ignoring groups
        self.add(name, nir.Conv2d(
            input_shape=tuple(node.shape[1:]), weight=np.diag(1.0 / std).reshape(c, c, 1, 1),
            stride=np.array([1, 1]), padding=np.array([0, 0]), dilation=np.array([1, 1]),
            groups=1, bias=-mean / std,
            metadata={d.KEY_ROLE: "input_normalization", d.KEY_PART_OF: node.name,
                      d.KEY_EXACT: "up to float rounding: (x - mean) / std as x / std - mean / std"}))
        self.connect([node.name], name, where)

    @writes("Conv2d")
    def op_conv2d(self, node: Node) -> None:
        import nir
        where = _where(node)
        w = node.params["weight"]
        if int(node.attrs["groups"]) != 1:
            raise IRError(f"{where}: grouped convolution (groups={node.attrs['groups']}) cannot "
                          "be exported: NIR 1.0.8's type check takes weight.shape[1] as the "
                          "input channels, so stock nir.read would refuse the file")
        bias = node.params.get("bias")
        if bias is None:
            bias = np.zeros(w.shape[0], dtype=w.dtype)
        self.add(node.name, nir.Conv2d(
            input_shape=self.input_shape(node)[1:], weight=w,
            stride=np.array(pair(node.attrs["stride"], where, "stride")),
            padding=np.array(pair(node.attrs["padding"], where, "padding")),
            dilation=np.array([1, 1]), groups=int(node.attrs["groups"]), bias=bias,
            metadata=self.meta(node)))
        self.connect_inputs(node, node.name)

    @writes("Affine")
    def op_affine(self, node: Node) -> None:
        import nir
        w = node.params["weight"]
        bias = node.params.get("bias")
        if bias is None:
            bias = np.zeros(w.shape[0], dtype=w.dtype)
        self.add(node.name, nir.Affine(weight=w, bias=bias, metadata=self.meta(node)))
        self.connect_inputs(node, node.name)

    @writes("LIF")
    def op_lif(self, node: Node) -> None:
        """NIR's LIF fires on ``v > v_threshold``: a ``>=`` neuron is written with the largest
        float32 below its threshold (dialect.float32_below), the same spikes for the float32
        arithmetic of the other toolchains; its own threshold travels in the attrs."""
        theta = float(node.attrs["v_threshold"])
        if node.attrs.get("spike_if", ">=") == ">":
            stock, exact = theta, "exact"
        else:
            stock, exact = d.stock_threshold(theta, integer_input=False)
        self.add(node.name, _lif(
            node.shape, tau=node.attrs["tau"], r=node.attrs.get("r", 1.0), v_threshold=stock,
            metadata=self.meta(node, **{d.KEY_SPIKE_IF: ">", d.KEY_EXACT: exact,
                                        "spikeform.dt": d.DT})))
        self.connect_inputs(node, node.name)

    @writes("SumPool2d", "Conv2d")
    def op_sumpool2d(self, node: Node) -> None:
        """Unpadded: a SumPool2d. Padded (the max-pool rewrite, the spike-driven attention's
        broadcast of a (D, 1, 1) map over the token grid): a Conv2d of diagonal all-ones
        kernels, because norse, snntorch (nirtorch) and sinabs import SumPool2d without its
        padding, which changes the output shape."""
        import nir
        where = _where(node)
        kernel = pair(node.attrs["kernel"], where, "kernel")
        stride = np.array(pair(node.attrs["stride"], where, "stride"))
        padding = pair(node.attrs["padding"], where, "padding")
        if padding == (0, 0):
            self.add(node.name, nir.SumPool2d(kernel_size=np.array(kernel), stride=stride,
                                              padding=np.array(padding),
                                              metadata=self.meta(node)))
        else:
            c = node.shape[0]
            self.add(node.name, nir.Conv2d(
                input_shape=self.input_shape(node)[1:], weight=diagonal_ones(c, kernel),
                stride=stride, padding=np.array(padding), dilation=np.array([1, 1]), groups=1,
                bias=np.zeros(c, dtype=np.float32),
                metadata=self.meta(node, **{d.KEY_EXACT: "exact: a window sum with zero "
                                            "padding, written as diagonal all-ones kernels"})))
        self.connect_inputs(node, node.name)

    @writes("LIF")
    def op_threshold(self, node: Node) -> None:
        """A memoryless LIF: tau = 1 step and r = 1 make dt = 1 forward Euler ``v = x``, so it
        spikes where the summed input passes the threshold and keeps nothing (the reset to 0
        is harmless). On integer inputs the stock rule ``v > ceil(t) - 0.5`` is our
        ``x >= t`` exactly, and memoryless in float arithmetic too (``v + (x - v) == x``)."""
        integer = all(_is_integer_valued(self.g, self.g[i]) for i in node.inputs)
        stock, exact = d.stock_threshold(float(node.attrs["threshold"]), integer)
        rule = ">"   # NIR's own rule on the stock field gives our spikes (stock_threshold)
        self.add(node.name, _lif(
            node.shape, tau=1.0, r=1.0, v_threshold=stock,
            metadata=self.meta(node, **{d.KEY_SPIKE_IF: rule, d.KEY_EXACT: exact,
                                        "spikeform.dt": d.DT})))
        self.connect_inputs(node, node.name)

    @writes(None)
    def op_sum(self, node: Node) -> None:
        """No node: NIR sums the edges into a node, so each input of the sum gets an edge
        into each of its readers (:meth:`sources`); the sum travels in graph metadata."""

    @writes("NIRGraph", stock=False)
    def op_spiking_attention(self, node: Node) -> None:
        import nir
        shape = np.array(node.shape, dtype=np.int64)
        roles = dict(zip(OPS[node.op].ordered_inputs, node.inputs))
        inner = nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": shape}),
                   "output": nir.Output(output_type={"output": shape})},
            edges=[("input", "output")],
            metadata={**self.meta(node), "spikeform.roles": d.dumps(roles, _where(node)),
                      "spikeform.semantics":
                          "per head h of num_heads channel groups, tokens = H*W row-major: "
                          "out_h = (Q_h K_h^T) V_h * scale; inputs q, k, v are the nodes named "
                          "in spikeform.roles. NIR has no primitive for it: the Input -> Output "
                          "body is a placeholder that stock executors would run as q + k + v",
                      d.KEY_EXACT: "not stock-executable"})
        self.add(node.name, inner)
        self.connect_inputs(node, node.name)

    @writes("Flatten")
    def op_token_time_mean(self, node: Node) -> None:
        """Flatten, with the token mean around it where there is more than one token: a
        SumPool2d over the grid before it (imported by every toolchain, unlike AvgPool2d),
        a diagonal 1/N Affine after it (the 1/N in a D x D matrix, not a D x D x H x W conv).
        Its dims count from the end (-3..-1): NIR's dims exclude the batch, and norse and
        snntorch pass them to torch unshifted, which would flatten the batch too."""
        import nir
        where = _where(node)
        src = self.input_shape(node)
        if len(src) != 3:
            raise IRError(f"{where}: needs a [D, H, W] token grid, got {list(src)}")
        dim, tokens = src[0], src[1] * src[2]
        if tokens > 1:
            pool = node.name + d.TOKEN_SUM_SUFFIX
            hw = np.array(src[1:], dtype=np.int64)
            self.add(pool, nir.SumPool2d(kernel_size=hw, stride=hw, padding=np.array([0, 0]),
                                         metadata={d.KEY_ROLE: "token_sum",
                                                   d.KEY_PART_OF: node.name}))
            self.connect_inputs(node, pool)
            self.connect([pool], node.name, where)
        else:
            self.connect_inputs(node, node.name)
        self.add(node.name, nir.Flatten(
            input_type={"input": np.array([dim, 1, 1])}, start_dim=-3, end_dim=-1,
            metadata=self.meta(node, **{"spikeform.time_reduction":
                                        "mean over all time steps of this node's output (the "
                                        "head after it is linear: average the Output instead)"})))
        if tokens > 1:
            mean = node.name + d.TOKEN_MEAN_SUFFIX
            self.add(mean, nir.Affine(
                weight=np.diag(np.full(dim, 1.0 / tokens, dtype=np.float32)),
                bias=np.zeros(dim, dtype=np.float32),
                metadata={d.KEY_ROLE: "token_mean", d.KEY_PART_OF: node.name}))
            self.connect([node.name], mean, where)
            self.value_of[node.name] = mean

    @writes("Output")
    def op_output(self, node: Node, name: Optional[str] = None) -> None:
        import nir
        name = name or node.name
        self.add(name, nir.Output(output_type={"output": np.array(node.shape, dtype=np.int64)},
                                  metadata=self.meta(node)))
        self.connect_inputs(node, name)

    # -- driver -------------------------------------------------------------------------------
    def build(self, frontier: List[str]) -> None:
        for name in self.keep:
            node = self.g[name]
            getattr(self, f"op_{node.op}")(node)
        for name in frontier:  # fragment outputs: what left-out nodes would have read
            node = self.g[name]
            out = Node(name, "output", [name], node.shape)
            self.op_output(out, name + d.PORTABLE_OUTPUT_SUFFIX)


def _handler(op: str) -> Optional[Callable]:
    """The exporter's handler for ``op`` (None: the op is not exported)."""
    return getattr(_Exporter, f"op_{op}", None) if op in handled_ops(_Exporter) else None


def nir_type_of(op: str) -> Optional[str]:
    """The NIR node type the export writes for an IR ``op`` under the IR node's name (None:
    no node, only edges; the first of :func:`nir_types_of`). KeyError for an op the export
    does not handle."""
    fn = _handler(op)
    if fn is None:
        raise KeyError(op)
    return fn.nir_type


def nir_types_of(op: str) -> Tuple[Optional[str], ...]:
    """Every NIR node type the export may write for an IR ``op`` under the IR node's name
    (``sumpool2d``: SumPool2d, or Conv2d where padded). KeyError for an unhandled op."""
    fn = _handler(op)
    if fn is None:
        raise KeyError(op)
    return fn.nir_types


def is_stock(op: str) -> bool:
    """Whether a consumer of stock NIR semantics executes what the exported ``op`` means."""
    fn = _handler(op)
    return bool(fn is not None and fn.stock)


def _downstream(graph: Graph, roots: Set[str]) -> Set[str]:
    out = set(roots)
    for node in graph:  # topological order
        if any(i in out for i in node.inputs):
            out.add(node.name)
    return out


def _count_types(nodes: Dict[str, object]) -> Dict[str, int]:
    import nir
    counts: Dict[str, int] = {}
    for n in nodes.values():
        counts[type(n).__name__] = counts.get(type(n).__name__, 0) + 1
        if isinstance(n, nir.NIRGraph):
            for k, v in _count_types(n.nodes).items():
                counts[k] = counts.get(k, 0) + v
    return counts


def graph_to_nir(graph: Graph, *, portable: bool = False):
    """(nir.NIRGraph, ExportInfo) for a float graph after ``float_passes``."""
    import nir
    _check_exportable(graph)
    blockers = [n for n in graph if not is_stock(n.op)] if portable else []
    left_out = _downstream(graph, {n.name for n in blockers})
    keep = [n.name for n in graph if n.name not in left_out]
    frontier = [n for n in keep if any(c.name in left_out for c in graph.consumers(n))]
    where_blocked = [f"{n.name} ({n.op})" for n in blockers]
    computes = [n for n in keep if not OPS[graph[n].op].is_source
                and nir_type_of(graph[n].op) is not None]
    if blockers and not computes:
        raise OptionError(f"a portable export would be empty: nothing stock consumers can "
                          f"execute precedes the node(s) without a stock NIR equivalent: "
                          f"{', '.join(where_blocked)}; export without portable",
                          option="portable")
    ex = _Exporter(graph, keep)
    ex.build(frontier)
    # the residual sums: no NIR node (edges only); the dialect records them by name
    sums = {n: {"inputs": list(graph[n].inputs), "shape": list(graph[n].shape)}
            for n in keep if graph[n].op == "sum"}
    metadata = {d.KEY_FORMAT: d.FORMAT, d.KEY_VERSION: d.VERSION,
                d.KEY_META: d.dumps(graph.meta, "graph meta"),
                d.KEY_ORDER: d.dumps(keep, "node order"),
                d.KEY_SUMS: d.dumps(sums, "residual sums"),
                d.KEY_CONVENTION: d.CONVENTION,
                d.KEY_FRAGMENT: "true" if blockers else "false"}
    if blockers:
        metadata[d.KEY_CUT] = d.dumps({"blockers": where_blocked,
                                       "left_out": [n.name for n in graph if n.name in left_out],
                                       "outputs": frontier}, "cut")
    try:
        nir_graph = nir.NIRGraph(nodes=ex.nodes, edges=ex.edges, metadata=metadata)
    except (ValueError, AssertionError) as e:  # NIR's type check: a shape the IR got wrong
        raise IRError(f"NIR rejects the exported graph: {e}") from None
    info = ExportInfo(ir_nodes=len(keep), nir_nodes=_count_types(nir_graph.nodes),
                      edges=len(ex.edges), portable=portable, fragment=bool(blockers),
                      outputs=[n + d.PORTABLE_OUTPUT_SUFFIX for n in frontier] or
                      [graph.output_node.name],
                      left_out=[n.name for n in graph if n.name in left_out],
                      blockers=where_blocked)
    return nir_graph, info


def write_nir_file(graph: Graph, path: Union[str, Path], *, portable: bool = False) -> ExportInfo:
    """Export ``graph`` (float IR after float_passes) to ``path`` atomically (temp + rename)."""
    import nir
    path = Path(path)
    nir_graph, info = graph_to_nir(graph, portable=portable)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        nir.write(tmp, nir_graph)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return info
