"""Deterministic on-disk form of a Graph: ``graph.json`` plus ``tensors.bin``.

``graph.json`` holds nodes, attributes and metadata with sorted keys; every array is a slice
of ``tensors.bin`` (little-endian, C order) described by dtype, shape, offset and length, and
the file's SHA-256 is recorded so corruption is caught. No pickles, no timestamps: the same
graph always gives the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Union

import numpy as np

from .ir import Graph, IRError, Node

IR_FORMAT = "spikformer-neuro-ir"
IR_VERSION = 1
GRAPH_FILE = "graph.json"
TENSOR_FILE = "tensors.bin"
ALLOWED_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "float32", "float64", "bool"}


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        if not np.isfinite(value):
            raise IRError(f"{where}: non-finite value {value} cannot be serialised")
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise IRError(f"{where}: value of type {type(value).__name__} cannot be serialised")


def graph_to_bytes(graph: Graph) -> tuple[bytes, bytes]:
    """(graph.json bytes, tensors.bin bytes) for a validated graph."""
    graph.validate()
    blob = bytearray()
    nodes = []
    for node in graph:
        params = {}
        for key in sorted(node.params):
            arr = np.ascontiguousarray(node.params[key])
            if arr.dtype.name not in ALLOWED_DTYPES:
                raise IRError(f"node '{node.name}': parameter '{key}' has dtype {arr.dtype}")
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
            params[key] = {"dtype": arr.dtype.name, "shape": list(arr.shape),
                           "offset": len(blob), "nbytes": len(data)}
            blob += data
        nodes.append({"name": node.name, "op": node.op, "inputs": list(node.inputs),
                      "shape": [int(s) for s in node.shape], "params": params,
                      "attrs": _jsonable(node.attrs, f"node '{node.name}' attrs")})
    doc = {"format": IR_FORMAT, "version": IR_VERSION,
           "meta": _jsonable(graph.meta, "graph meta"), "nodes": nodes,
           "tensors_sha256": hashlib.sha256(bytes(blob)).hexdigest()}
    text = json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"
    return text.encode(), bytes(blob)


def graph_from_bytes(graph_json: bytes, tensors: bytes, source: str = "<memory>") -> Graph:
    def bad(msg: str) -> IRError:
        return IRError(f"{source}: {msg}")

    try:
        doc = json.loads(graph_json)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad(f"{GRAPH_FILE} is not valid JSON ({e}); recompile the network") from None
    if not isinstance(doc, dict) or doc.get("format") != IR_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise bad(f"not a spikformer-neuro graph (format {found!r})")
    if doc.get("version") != IR_VERSION:
        raise bad(f"graph format version {doc.get('version')} is not supported "
                  f"(this compiler reads version {IR_VERSION}); recompile with this version")
    if hashlib.sha256(tensors).hexdigest() != doc.get("tensors_sha256"):
        raise bad(f"{TENSOR_FILE} does not match its checksum: the artifact is corrupt or "
                  "truncated; recompile the network")
    graph = Graph(meta=doc.get("meta", {}))
    try:
        for nd in doc["nodes"]:
            params: Dict[str, np.ndarray] = {}
            for key, spec in nd["params"].items():
                if spec["dtype"] not in ALLOWED_DTYPES:
                    raise bad(f"node '{nd['name']}': parameter '{key}' has dtype {spec['dtype']}")
                start, n = int(spec["offset"]), int(spec["nbytes"])
                dtype = np.dtype(spec["dtype"]).newbyteorder("<")
                arr = np.frombuffer(tensors[start:start + n], dtype=dtype)
                params[key] = arr.reshape(spec["shape"]).astype(dtype.newbyteorder("="))
            graph.add(Node(nd["name"], nd["op"], list(nd["inputs"]), tuple(nd["shape"]),
                           params, nd["attrs"]))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, IRError):
            raise
        raise bad(f"malformed graph entry ({type(e).__name__}: {e}); recompile the network") from None
    try:
        return graph.validate()
    except IRError as e:
        raise bad(str(e)) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_build_dir(target: Union[str, Path]) -> Path:
    """An empty sibling directory to build ``target`` in (normal permissions, unlike mkdtemp's)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
    os.chmod(build, 0o777 & ~_umask())
    return build


def write_atomic(path: Union[str, Path], data: bytes) -> None:
    """Write a file so that readers see either the old content or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_graph(graph: Graph, directory: Union[str, Path]) -> Path:
    """Write graph.json and tensors.bin into ``directory`` (each file atomically)."""
    directory = Path(directory)
    graph_json, tensors = graph_to_bytes(graph)
    write_atomic(directory / TENSOR_FILE, tensors)
    write_atomic(directory / GRAPH_FILE, graph_json)
    return directory


def load_graph(directory: Union[str, Path]) -> Graph:
    directory = Path(directory)
    for name in (GRAPH_FILE, TENSOR_FILE):
        if not (directory / name).is_file():
            raise IRError(f"{directory}: missing {name}; is this a compiled artifact directory? "
                          "(spikeform-compile writes one)")
    return graph_from_bytes((directory / GRAPH_FILE).read_bytes(),
                            (directory / TENSOR_FILE).read_bytes(), str(directory))


def replace_directory_atomic(build: Path, target: Path, *,
                             replaceable: Callable[[Path], bool]) -> None:
    """Move a fully written ``build`` directory to ``target``, replacing an old one only when
    it is empty or ``replaceable(target)`` says it is an earlier output of the same kind:
    anything else would be deleted, so it is refused (FileExistsError) even if a caller's
    earlier check passed and the directory changed since."""
    target = Path(target)
    old = None
    if target.exists() and not (target.is_dir() and (not any(target.iterdir())
                                                     or replaceable(target))):
        raise FileExistsError(f"{target} exists and is not an earlier output of this command; "
                              "refusing to replace (and delete) it: choose another output")
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(build, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
