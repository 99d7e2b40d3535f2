"""Lowering: a compiler graph -> a plan of Lava processes (``LavaNetwork``).

One lowering for both numeric kinds. :class:`Lowering` visits the nodes in topological
order and calls one ``op_<name>`` handler per op (the registry's convention,
``compiler.ops.handled_ops``); the handlers build the plan -- one :class:`Stage` per Lava
process, each node's lag (:mod:`deploy.lava.timing`) and the delays that align every
join -- and ask a parameter strategy (:mod:`deploy.lava.params`) for the numbers:

* ``lower(graph)``: a quantized graph (``compiler.passes.quantize``) with
  :class:`~deploy.lava.params.FixedPointParams`, for Lava's fixed_pt models;
* ``lower_float(graph)``: a float graph after ``compiler.passes.float_passes`` with
  :class:`~deploy.lava.params.FloatParams`, for Lava's floating_pt models
  (target ``lava-sim-float``).

The result is pure data; :mod:`deploy.lava.build` turns it into fresh Lava processes for
each run (a Lava process graph runs once: its runtime cannot be restarted after ``stop``).

Process mapping (one Lava process per stage, :class:`~deploy.lava.stages.StageKind`)::

    input              SOURCE     io.source.RingBuffer (graded values or spikes)      lag 0
    conv2d             CONV       conv.Conv (fixed: graded when graded_input;         lag +1
                                  float: graded float64, weights x the LIF gain)
    sumpool2d          CONV       conv.Conv, depthwise all-ones kernel                lag +1
                                  (block-diagonal groups=1 kernel above 127 channels)
    loihi_lif / lif    LIF_RESET  lif.LIFReset (interval T, offset = lag + 1)         lag +0
    threshold          LIF        memoryless lif.LIF (count = sum of its sum pools)   lag +0
    spiking_attention  ATTENTION  attention.SpikingAttention (custom)                 lag +0
    sum                DELAYED_SUM graded.DelayedSum (early inputs on the delay port) lag +0
    token_time_sum /   READOUT    io.Readout (custom, + the affine head; the mean     lag +0
    token_time_mean               divides by T*H*W)
    affine, output     (folded into the Readout)
    (delay relay)      CONV + LIF identity conv.Conv + memoryless lif.LIF, per step    lag +1
                                  of delay of a spike map (below)

Joins are aligned in two ways (:mod:`deploy.lava.timing`):

* **stock relays** -- a neuron's early synaptic input (a conv2d / sumpool2d reading a
  spike map, read by that neuron only: ``timing.spike_relays``) is built from its input
  spikes delayed by a chain of relays, each an identity ``Conv`` (1x1 all-ones
  depthwise, like a 1x1 sum pool) + a memoryless ``LIF`` that fires on any input; one
  chain per source, shared by every (source, delay) (the chain to d extends the one to
  d - 1). Stock processes only: what the spike-driven family needs;
* **``DELAYED_SUM`` delay lines** -- any other input whose lag is short of its consumer's
  (Spikformer's residual skips, a graded conv), one per (source, delay), shared by
  consumers (a Python process: on the host under lava-loihi).

Ops the float passes remove (``batchnorm``, ``maxpool2d``) and ops of the other level are
refused with a :class:`LoweringError` naming the node.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

from compiler.ir import Graph, Node
from compiler.ops import OPS
from loihi_numerics import fixed_point as fx

from deploy.lava import timing
from deploy.lava.params import (FixedPointParams, FloatParams, ParameterStrategy, conv_params,
                                sumpool_params)
from deploy.lava.stages import (LavaNetwork, LoweringError, SourceEncoding, Stage, StageKind,
                                fail)


class Lowering:
    """A graph -> :class:`LavaNetwork`, with the numbers from ``params``.

    ``run()`` checks the graph, then calls ``op_<node.op>(node)`` for every node in
    topological order; a handler returns the node's :class:`Stage` (added as the
    process carrying the node's output) or None for an op folded into another stage.
    One instance lowers one graph once (``lower`` / ``lower_float`` make a fresh one).
    """

    def __init__(self, graph: Graph, params: ParameterStrategy):
        self.graph = graph
        self.params = params
        self.time_steps = 0                           # graph.time_steps, once validated
        self.lags: Dict[str, int] = {}
        self.stages: Dict[str, Stage] = {}
        self.providers: Dict[str, str] = {}          # node -> stage carrying its output
        self.readout: Optional[str] = None
        self.relays: Dict[str, int] = {}             # synaptic node -> relays before it
        self._delay_lines: Dict[Tuple[str, int], str] = {}
        self._relay_chains: Dict[Tuple[str, int], str] = {}

    # -- the driver ---------------------------------------------------------------------------
    def run(self) -> LavaNetwork:
        graph = self.graph
        graph.validate()
        supported = set(self.params.ops)
        for node in graph:
            if node.op not in supported:
                raise fail(node, self.params.unsupported(node.op))
        self.time_steps = graph.time_steps
        self.params.prepare(graph)
        self.lags = timing.node_lags(graph)
        self.relays = timing.spike_relays(graph)
        for node in graph:
            stage = getattr(self, f"op_{node.op}")(node)
            if stage is not None:
                self.add(stage)
                self.providers[node.name] = stage.name
        return self.network()

    def network(self) -> LavaNetwork:
        if self.readout is None:
            raise LoweringError("the graph has no token_time_sum / token_time_mean readout")
        g = self.graph
        source = self.stages[self.providers[g.input_node.name]]
        return LavaNetwork(stages=self.stages, time_steps=self.time_steps,
                           input_shape=tuple(g.input_node.shape),
                           input_encoding=source.params["encoding"],
                           num_classes=int(g.output_node.shape[0]), lags=self.lags,
                           providers=self.providers, readout=self.readout,
                           meta={"model": g.meta.get("model"), "config": g.meta.get("config")},
                           numeric=self.params.numeric)

    # -- plan bookkeeping ---------------------------------------------------------------------
    def add(self, stage: Stage) -> Stage:
        if stage.name in self.stages:
            raise LoweringError(f"duplicate stage name '{stage.name}'")
        self.stages[stage.name] = stage
        return stage

    def stage(self, node: Node, kind: StageKind, params: dict,
              inputs: List[Tuple[str, str]] = ()) -> Stage:
        return Stage(node.name, kind, node.name, self.lags[node.name], params, list(inputs))

    def delayed(self, src: str, d: int) -> str:
        """Stage carrying node ``src``'s output delayed by ``d`` more steps."""
        if d == 0:
            return self.providers[src]
        key = (src, d)
        if key not in self._delay_lines:
            s = self.stages[self.providers[src]]
            st = self.add(Stage(f"{src}+{d}", StageKind.DELAYED_SUM, src, self.lags[src] + d,
                                dict(shape=s.shape, delay=d), [(s.name, "a_delayed")]))
            self._delay_lines[key] = st.name
        return self._delay_lines[key]

    def relayed(self, src: str, d: int) -> str:
        """Stage carrying node ``src``'s spikes ``d`` steps late through stock relays:
        relay k is an identity Conv (one step) reading relay k - 1 (k = 1: ``src``) and a
        memoryless LIF that fires on any input. Shared per (source, delay)."""
        if d == 0:
            return self.providers[src]
        key = (src, d)
        if key not in self._relay_chains:
            prev = self.relayed(src, d - 1)
            self._relay_chains[key] = self._relay(self.graph[src], d, prev).name
        return self._relay_chains[key]

    def _relay(self, src: Node, d: int, prev: str) -> Stage:
        """Relay ``d`` of ``src``'s chain (reading stage ``prev``): its Conv, then its LIF."""
        p, lag = self.params, self.lags[src.name] + d
        pool = Node(f"{src.name}.relay{d}.conv", "sumpool2d", [src.name], tuple(src.shape),
                    attrs=dict(kernel=1, stride=1, padding=0))
        conv = self.add(Stage(pool.name, StageKind.CONV, src.name, lag,
                              sumpool_params(pool, src, p.pool_message_bits, p.weight_dtype),
                              [(prev, "s_in")]))
        return self.add(Stage(f"{src.name}.relay{d}", StageKind.LIF, src.name, lag,
                              p.relay(src), [(conv.name, "a_in")]))

    def aligned_inputs(self, node: Node, port: str) -> List[Tuple[str, str]]:
        """``node``'s inputs, each delayed to the latest one, all into ``port``."""
        return [(self.delayed(i, d), port) for i, d in timing.deficits(node, self.lags).items()]

    def synapse_inputs(self, node: Node) -> List[Tuple[str, str]]:
        """A Conv stage's input: its source's relayed spikes when the node is retimed
        (``timing.spike_relays``), else its inputs aligned as usual."""
        d = self.relays.get(node.name, 0)
        if d:
            return [(self.relayed(node.inputs[0], d), "s_in")]
        return self.aligned_inputs(node, "s_in")

    def first_input(self, node: Node) -> Node:
        return self.graph[node.inputs[0]]

    # -- one handler per op (compiler.ops) -----------------------------------------------------
    def op_input(self, node: Node) -> Stage:
        return self.stage(node, StageKind.SOURCE,
                          dict(shape=_lava(node), encoding=self.params.source_encoding(node)))

    def op_conv2d(self, node: Node) -> Stage:
        a, src = node.attrs, self.first_input(node)
        weight, bits = self.params.conv(node, src)
        return self.stage(node, StageKind.CONV, conv_params(
            node, src.shape, weight, a["stride"], a["padding"], int(a["groups"]), bits,
            weight_dtype=self.params.weight_dtype), self.synapse_inputs(node))

    def op_sumpool2d(self, node: Node) -> Stage:
        p = self.params
        return self.stage(node, StageKind.CONV, sumpool_params(
            node, self.first_input(node), p.pool_message_bits, p.weight_dtype),
            self.synapse_inputs(node))

    def op_loihi_lif(self, node: Node) -> Stage:
        """Loihi's CUBA LIF (quantized graphs)."""
        return self._neurons(node)

    def op_lif(self, node: Node) -> Stage:
        """The IR's generalised LIF (float graphs)."""
        return self._neurons(node)

    def _neurons(self, node: Node) -> Stage:
        return self.stage(node, StageKind.LIF_RESET,
                          self.params.lif(node, self.lags[node.name], self.time_steps),
                          self.aligned_inputs(node, "a_in"))

    def op_threshold(self, node: Node) -> Stage:
        """Spike where the count of its sum pools (summed on the LIF's a_in) >= threshold."""
        inputs = [self.graph[i] for i in node.inputs]
        return self.stage(node, StageKind.LIF, self.params.threshold(node, inputs),
                          self.aligned_inputs(node, "a_in"))

    def op_spiking_attention(self, node: Node) -> Stage:
        roles = OPS[node.op].ordered_inputs                         # (q, k, v)
        inputs = [(self.delayed(i, d), role) for (i, d), role in
                  zip(timing.deficits(node, self.lags).items(), roles)]
        return self.stage(node, StageKind.ATTENTION,
                          dict(shape=_lava(node), num_heads=int(node.attrs["num_heads"]),
                               gain=self.params.attention_gain(node),
                               saturation=int(node.attrs.get("saturation", 0))), inputs)

    def op_sum(self, node: Node) -> Stage:
        """A residual join: inputs on time go to ``a_in``; the most common positive
        deficit rides the process's own delay line (``a_delayed``); any other
        deficit gets a separate delay line into ``a_in``."""
        defs = timing.deficits(node, self.lags)
        late = Counter(d for d in defs.values() if d > 0)
        own = max(late, key=lambda d: (late[d], d)) if late else 0
        inputs = []
        for i, d in defs.items():
            if own and d == own:
                inputs.append((self.providers[i], "a_delayed"))
            else:
                inputs.append((self.delayed(i, d), "a_in"))
        return self.stage(node, StageKind.DELAYED_SUM, dict(shape=_lava(node), delay=own),
                          inputs)

    def op_token_time_sum(self, node: Node) -> Stage:
        """The integer sum over tokens and time (quantized graphs) + the head."""
        return self._readout(node, divisor=1)

    def op_token_time_mean(self, node: Node) -> Stage:
        """The mean over tokens and time (float graphs) + the head: the Readout divides
        the sum by ``T * H * W`` before the head."""
        in_node = self.first_input(node)
        return self._readout(node, divisor=self.time_steps * int(np.prod(in_node.shape[1:])))

    def _readout(self, node: Node, divisor: int) -> Stage:
        graph, in_node = self.graph, self.first_input(node)
        heads = graph.consumers(node.name)
        if len(heads) != 1 or heads[0].op != "affine" or len(heads[0].inputs) != 1:
            raise fail(node, "must feed exactly one affine head (and nothing else)")
        head = heads[0]
        outs = graph.consumers(head.name)
        if len(outs) != 1 or outs[0].op != "output" or outs[0] is not graph.output_node \
                or len(outs[0].inputs) != 1:
            raise fail(head, "must feed the graph's output node (and nothing else)")
        if len(in_node.shape) != 3:
            raise fail(node, f"expects a [C, H, W] token map; got {in_node.shape}")
        dtype = self.params.head_dtype
        w = np.asarray(head.params["weight"], dtype=dtype)
        b = np.asarray(head.params.get("bias", np.zeros(w.shape[0])), dtype=dtype)
        st = self.stage(node, StageKind.READOUT,
                        dict(shape=_lava(in_node), weight=w, bias=b, divisor=int(divisor),
                             time_steps=self.time_steps, lag=self.lags[node.name]),
                        self.aligned_inputs(node, "a_in"))
        self.readout = st.name
        return st

    def op_affine(self, node: Node) -> None:
        """The head runs inside the Readout of the readout node it reads."""
        src = self.first_input(node)
        if len(node.inputs) != 1 or not OPS[src.op].reduces_time:
            raise fail(node, "the head must read one token_time_sum / token_time_mean "
                             "readout (it runs inside the Readout process)")
        return None

    def op_output(self, node: Node) -> None:
        """The logits: what the Readout sends to the host."""
        if len(node.inputs) != 1 or self.first_input(node).op != "affine":
            raise fail(node, "must read one affine head (the Readout's logits)")
        return None


def _lava(node: Node) -> Tuple[int, int, int]:
    """The node's output shape in Lava's ``(W, H, C)`` layout."""
    return fx.lava_shape(node.shape)


def lower(graph: Graph) -> LavaNetwork:
    """Lower a quantized graph (``compiler.passes.quantize.quantize``) to a Lava plan for
    the fixed-point models (targets ``lava-sim``, ``lava-sim-stock``, ``loihi2``)."""
    return Lowering(graph, FixedPointParams()).run()


def lower_float(graph: Graph) -> LavaNetwork:
    """Lower a float graph (after ``compiler.passes.float_passes``) to a Lava plan for
    Lava's floating-point models (target ``lava-sim-float``)."""
    return Lowering(graph, FloatParams()).run()


__all__ = ["Lowering", "LavaNetwork", "LoweringError", "SourceEncoding", "Stage", "StageKind",
           "lower", "lower_float"]
