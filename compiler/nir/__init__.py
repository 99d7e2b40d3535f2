"""NIR interop: export our float IR to a ``.nir`` file, and read ``.nir`` files into float IR.

- :func:`write_nir_file` writes the spikeform dialect (stock NIR nodes plus ``spikeform.*``
  metadata; compiler/nir/export.py, docs/nir.md).
- :func:`read_nir_file` dispatches on the graph metadata: a file we wrote (key
  ``spikeform.format``) is restored exactly (compiler/nir/spikeform_import.py); anything else
  is a foreign graph (snntorch, norse, sinabs exports) read by compiler/nir/foreign.py with
  an explicit discretisation ``convention``.
Either way the result is a float-stage IR Graph ready for ``compiler.passes.float_passes``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

from ..ir import Graph, IRError, OptionError
from . import dialect
from .conventions import CONVENTIONS as _CONVENTION_CLASSES
from .export import ExportInfo, graph_to_nir, write_nir_file

__all__ = ["CONVENTIONS", "ExportInfo", "graph_to_nir", "is_nir_file", "read_nir_file",
           "read_nir_graph", "write_nir_file"]

#: the discretisation conventions (compiler/nir/conventions.py): three foreign toolchains, then ours
CONVENTIONS = tuple(_CONVENTION_CLASSES)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_nir_file(path: Union[str, Path]) -> bool:
    """A ``.nir`` name, or an HDF5 file (NIR's container) under any name."""
    path = Path(path)
    if path.suffix.lower() == ".nir":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _unknown_node_types(path: Path) -> List[str]:
    """'name (type)' of every node whose type stock NIR does not know (nested included)."""
    import h5py
    import nir

    known = set(nir.ir.__all__)
    found: List[str] = []

    def walk(group, prefix: str) -> None:
        if "nodes" not in group:
            return
        for key, node in group["nodes"].items():
            kind = node["type"][()] if "type" in node else b"<no type>"
            kind = kind.decode("utf8", "replace") if isinstance(kind, bytes) else str(kind)
            if kind not in known or kind in ("NIRNode", "str2NIRNode", "dict2NIRNode"):
                found.append(f"'{prefix}{key}' ({kind})")
            elif kind == "NIRGraph":
                walk(node, f"{prefix}{key}/")

    try:
        with h5py.File(path, "r") as f:
            walk(f["node"], "")
    except (OSError, KeyError, TypeError):
        pass
    return found


def read_nir_graph(path: Union[str, Path]):
    """``nir.read`` with every failure turned into an IRError naming the file (and node)."""
    import nir

    path = Path(path)
    if not path.exists():
        raise IRError(f"{path}: no such NIR file")
    if not path.is_file():
        raise IRError(f"{path}: not a file")
    try:
        return nir.read(str(path))
    except Exception as e:  # noqa: BLE001 - h5py, NIR's asserts and type checks raise many kinds
        unknown = _unknown_node_types(path)
        if unknown:
            raise IRError(f"{path}: node(s) {', '.join(unknown)} have a type stock NIR 1.0 "
                          "does not define; export the graph with stock NIR nodes only") from None
        if isinstance(e, OSError):
            raise IRError(f"{path}: not a readable NIR (HDF5) file ({e}); is it corrupt or "
                          "truncated?") from None
        detail = str(e) or type(e).__name__
        raise IRError(f"{path}: NIR cannot load this graph: {detail}") from None


def is_spikeform_nir(path: Union[str, Path]) -> bool:
    """Whether a readable ``.nir`` file was written by our exporter (it states its own
    convention, time steps and data set)."""
    return dialect.KEY_FORMAT in (read_nir_graph(path).metadata or {})


def read_nir_file(path: Union[str, Path], *, convention: Optional[str] = None,
                  dt: Optional[float] = None, time_steps: Optional[int] = None,
                  dataset: Optional[str] = None) -> Graph:
    """A ``.nir`` file -> float IR Graph (see the module docstring for the dispatch).

    Our own files carry their time steps and data set: ``time_steps``/``dataset``, when given,
    must agree with them, and ``convention``/``dt`` must be left unset (or say what the file
    says). Foreign files need ``convention`` and ``time_steps``; ``dt`` is the foreign
    exporter's time step. A wrong or missing option is a :class:`~compiler.ir.OptionError`
    whose ``option`` is the caller-facing parameter name of :func:`compiler.pipeline.load_source`
    (``nir_convention``, ``nir_dt``, ``time_steps``, ``dataset``).
    """
    path = Path(path)
    graph = read_nir_graph(path)
    md = graph.metadata or {}
    fmt = md.get(dialect.KEY_FORMAT)
    fmt = fmt.decode("utf8") if isinstance(fmt, bytes) else fmt
    if fmt is not None:
        if fmt != dialect.FORMAT:
            raise IRError(f"{path}: unknown spikeform NIR format {fmt!r}")
        for option, value, own in (("nir_convention", convention, "spikeform"),
                                   ("nir_dt", dt, dialect.DT)):
            if value not in (None, own):
                raise OptionError(
                    f"{path}: the file was written by spikeform-compile and states its own "
                    f"convention (spikeform, dt = {dialect.DT:g}); {option} {value!r} does not "
                    f"apply (leave {option} unset)", option=option)
        from .spikeform_import import spikeform_nir_to_ir
        ir = spikeform_nir_to_ir(graph, source=str(path))
        for option, value, have, what in (
                ("time_steps", time_steps, ir.time_steps, "{} time steps"),
                ("dataset", dataset, ir.meta.get("dataset"), "the data set {!r}")):
            if value is not None and have is not None and value != have:
                raise OptionError(f"{path}: the file was exported with {what.format(have)}; "
                                  f"{option} {value!r} contradicts it (leave {option} unset)",
                                  option=option)
        return ir
    if convention is None:
        raise OptionError(f"{path}: a NIR graph from another toolchain needs its discretisation "
                          f"convention: pass nir_convention (one of "
                          f"{', '.join(CONVENTIONS[:3])})", option="nir_convention")
    if convention not in CONVENTIONS:
        raise OptionError(f"{path}: unknown NIR convention {convention!r} (nir_convention); "
                          f"choose one of {', '.join(CONVENTIONS)}", option="nir_convention")
    if time_steps is None:
        raise OptionError(f"{path}: a NIR graph from another toolchain does not say how many "
                          "time steps to run: pass time_steps", option="time_steps")
    from .foreign import foreign_nir_to_ir
    return foreign_nir_to_ir(graph, convention=convention, time_steps=int(time_steps),
                             dataset=dataset, dt=dt, source=str(path))
