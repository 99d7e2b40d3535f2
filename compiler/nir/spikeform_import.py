"""Read a spikeform-dialect NIR graph (what compiler.nir.export wrote) back into exactly the
float IR that was exported: the same node names and order, ops, attrs, params (dtype and
values) and graph meta.

The stock fields carry the numbers (weights, biases); the ``spikeform.*`` metadata carries
what NIR cannot say (attr types, input order, attention roles, residual sums, the meta). The
two must agree: the importer re-derives every stock field and every edge from the restored
IR node and refuses a file where they differ (e.g. a LIF whose tau was edited by another
tool), naming the file and node. The stock encodings the export chose (a threshold's
memoryless LIF, a padded sum-pool's diagonal Conv2d, the helper nodes ``.normalize``,
``.token_sum``, ``.token_mean``) carry no IR numbers: they are re-derived, never read.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import numpy as np

from ..ir import Graph, IRError, Node
from ..ops import OPS
from . import dialect as d
from .export import graph_to_nir, nir_types_of


def _md(node, key: str, where: str) -> Any:
    md = getattr(node, "metadata", None) or {}
    if key not in md:
        raise IRError(f"{where}: metadata key '{key}' is missing; the node was not written by "
                      "spikeform's NIR export (or another tool dropped its metadata)")
    value = md[key]
    return value.decode("utf8") if isinstance(value, bytes) else value


def _params(nir_node, names: List[str], where: str) -> Dict[str, np.ndarray]:
    """The IR params ``names`` from the NIR node's stock fields of the same name (which params
    an op takes is Graph.validate's business, against the registry)."""
    fields = ({f.name for f in dataclasses.fields(nir_node)} - {"metadata"}
              if dataclasses.is_dataclass(nir_node) else set())
    out = {}
    for k in names:
        if not isinstance(k, str) or k not in fields or getattr(nir_node, k) is None:
            raise IRError(f"{where}: param {k!r} cannot be carried by a NIR "
                          f"{type(nir_node).__name__} node")
        out[k] = np.array(getattr(nir_node, k))
    return out


def _restore_node(name: str, nir_node, sums: Dict[str, dict], where_file: str) -> Node:
    where = f"{where_file}: node '{name}'"
    if name in sums:
        spec = sums[name]
        return Node(name, "sum", list(spec["inputs"]), tuple(spec["shape"]))
    if nir_node is None:
        raise IRError(f"{where} is listed in the graph's node order but missing from the file")
    op = _md(nir_node, d.KEY_OP, where)
    try:
        want = nir_types_of(op)
    except KeyError:
        want = (None,)
    if want == (None,):   # not an op at all, or one the export writes no NIR node for
        what = "not written as a NIR node by the export" if op in OPS else "unknown"
        raise IRError(f"{where}: IR op {op!r} in its metadata is {what}")
    if type(nir_node).__name__ not in want:
        raise IRError(f"{where}: an IR {op} must be a NIR {' or '.join(want)}, found "
                      f"{type(nir_node).__name__}")
    attrs = d.loads(_md(nir_node, d.KEY_ATTRS, where), f"{where} attrs")
    inputs = d.loads(_md(nir_node, d.KEY_INPUTS, where), f"{where} inputs")
    shape = d.loads(_md(nir_node, d.KEY_SHAPE, where), f"{where} shape")
    names = d.loads(_md(nir_node, d.KEY_PARAMS, where), f"{where} params")
    if not (isinstance(attrs, dict) and isinstance(inputs, list) and isinstance(shape, list)
            and isinstance(names, list)):
        raise IRError(f"{where}: malformed spikeform metadata")
    return Node(name, op, [str(i) for i in inputs], tuple(int(s) for s in shape),
                _params(nir_node, names, where), attrs)


def _same(a, b) -> bool:
    """Exact equality of two NIR field values (arrays, numbers, strings, nested dicts)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(_same(a[k], b[k]) for k in a))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "SUO" or b.dtype.kind in "SUO":
        return a.shape == b.shape and all(
            (x.decode() if isinstance(x, bytes) else x) == (y.decode() if isinstance(y, bytes) else y)
            for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def _fields(node) -> Dict[str, Any]:
    out = node.to_dict()
    out.pop("metadata", None)
    if "nodes" in out:  # nested graph: compare its body too
        out["nodes"] = {k: {kk: vv for kk, vv in v.items() if kk != "metadata"}
                        for k, v in out["nodes"].items()}
        out["edges"] = [list(e) for e in out["edges"]]
    return out


def _check_consistent(restored: Graph, file_graph, where_file: str) -> None:
    """Re-export the restored IR: every stock node and edge must equal the file's."""
    again, _ = graph_to_nir(restored)
    extra = sorted(set(file_graph.nodes) - set(again.nodes))
    if extra:
        kinds = ", ".join(f"'{n}' ({type(file_graph.nodes[n]).__name__})" for n in extra)
        raise IRError(f"{where_file}: node(s) {kinds} are not part of the spikeform network "
                      "described by its metadata; the file was edited after export")
    for name, node in again.nodes.items():
        theirs = file_graph.nodes.get(name)
        if theirs is None:
            raise IRError(f"{where_file}: node '{name}' ({type(node).__name__}) is missing")
        mine, got = _fields(node), _fields(theirs)
        for key in sorted(set(mine) | set(got)):
            if key not in mine or key not in got or not _same(mine[key], got[key]):
                raise IRError(f"{where_file}: node '{name}' ({type(theirs).__name__}): field "
                              f"'{key}' disagrees with its spikeform metadata (the stock value "
                              "was changed after export); re-export the network")
    edges = [tuple(e) for e in file_graph.edges]
    if sorted(edges) != sorted(again.edges):
        diff = sorted(set(edges) ^ set(again.edges))[:5]
        raise IRError(f"{where_file}: its edges differ from the ones its spikeform metadata "
                      f"implies (first differences: {diff}); re-export the network")


def spikeform_nir_to_ir(nir_graph, *, source: str) -> Graph:
    """The float IR Graph a spikeform-dialect ``nir.NIRGraph`` was exported from."""
    md = nir_graph.metadata or {}
    version = md.get(d.KEY_VERSION)
    try:
        supported = version is not None and int(np.asarray(version)) == d.VERSION
    except (TypeError, ValueError):
        supported = False
    if not supported:
        raise IRError(f"{source}: spikeform NIR version {version!r} is not supported (this "
                      f"compiler reads version {d.VERSION}); re-export the network")
    fragment = md.get(d.KEY_FRAGMENT, "false")
    if (fragment.decode() if isinstance(fragment, bytes) else fragment) == "true":
        cut = d.loads(md.get(d.KEY_CUT, "{}"), f"{source} cut")
        raise IRError(f"{source}: a portable export holds only part of the network (it "
                      f"stops before {', '.join(cut.get('blockers', [])) or 'some nodes'}); "
                      "compile the full export or the checkpoint instead")
    meta = d.loads(md.get(d.KEY_META), f"{source}: graph metadata '{d.KEY_META}'")
    order = d.loads(md.get(d.KEY_ORDER), f"{source}: graph metadata '{d.KEY_ORDER}'")
    sums = d.loads(md.get(d.KEY_SUMS, "{}"), f"{source}: graph metadata '{d.KEY_SUMS}'")
    if not (isinstance(meta, dict) and isinstance(order, list) and isinstance(sums, dict)):
        raise IRError(f"{source}: malformed spikeform graph metadata")
    graph = Graph(meta=meta)
    for name in order:
        graph.add(_restore_node(str(name), nir_graph.nodes.get(name), sums, source))
    try:
        graph.validate()
    except IRError as e:
        raise IRError(f"{source}: {e}") from None
    _check_consistent(graph, nir_graph, source)
    return graph
