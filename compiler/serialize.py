"""Deterministic on-disk form of a Graph: ``graph.json`` plus ``tensors.bin``, and a manifest.

``graph.json`` holds nodes, attributes and metadata with sorted keys; every array is a slice
of ``tensors.bin`` (little-endian, C order) described by dtype, shape, offset and length, and
the file's SHA-256 is recorded so corruption is caught. No pickles, no timestamps: the same
graph always gives the same bytes.

``manifest.json`` (written last) records the size and SHA-256 of every file the compiler
wrote into the artifact (graph.json, tensors.bin and, from spikeform-compile, report.json),
plus a digest of that list. :func:`load_graph` checks all of it before reading a byte of the
graph (:func:`verify_artifact`): any change to any artifact file, the manifest included, is an
:class:`IntegrityError` naming the file. An artifact without a manifest (written before it
existed, or with it deleted) is refused: its graph.json could have been edited unnoticed.

Output directories are replaced wholesale (:func:`replace_directory_atomic`) but never lose a
file the command did not write: such files make the swap refuse, naming them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Union

import numpy as np

from .ir import Graph, IRError, Node

IR_FORMAT = "spikformer-neuro-ir"
IR_VERSION = 1
GRAPH_FILE = "graph.json"
TENSOR_FILE = "tensors.bin"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "spikformer-neuro-manifest"
MANIFEST_VERSION = 1
#: every file a compiled artifact can hold (what spikeform-compile writes)
ARTIFACT_FILES = frozenset({GRAPH_FILE, TENSOR_FILE, "report.json", MANIFEST_FILE})
_RECOMPILE = "recompile the network with spikeform-compile"
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


# -- the manifest -----------------------------------------------------------------------------

class IntegrityError(IRError):
    """An artifact whose files differ from what the compiler wrote (edited, truncated,
    corrupted, missing), or that has no manifest to check them against."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def _entries_digest(entries: Mapping[str, Any]) -> str:
    return _sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())


def _plain_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def manifest_bytes(files: Mapping[str, bytes]) -> bytes:
    """The manifest of ``files`` (name -> content): size and SHA-256 of each, and a digest
    of that list (so an edit of the manifest itself is told from an edit of a file)."""
    for name in files:
        if not _plain_name(name) or name == MANIFEST_FILE:
            raise ValueError(f"artifact file name {name!r} is not a plain file name")
    entries = {name: {"bytes": len(data), "sha256": _sha256(data)}
               for name, data in sorted(files.items())}
    return _json_bytes({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                        "files": entries, "files_sha256": _entries_digest(entries)})


def verify_artifact(directory: Union[str, Path]) -> Dict[str, bytes]:
    """The content of every file ``directory``'s manifest lists, each checked against its
    size and SHA-256; an :class:`IntegrityError` naming the file otherwise. Files the
    manifest does not list (a user's notes) are not read."""
    directory = Path(directory)

    def fail(msg: str) -> IntegrityError:
        return IntegrityError(f"{directory}: {msg}")

    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise fail(f"no {MANIFEST_FILE}, so its files cannot be checked for changes: the "
                   "artifact was written by an older spikeform-compile, or its manifest was "
                   f"deleted; {_RECOMPILE} (the same checkpoint gives the same graph.json "
                   "and tensors.bin)")
    raw = path.read_bytes()
    edited = (f"{MANIFEST_FILE} was edited or corrupted after compilation ({{}}); it cannot "
              f"vouch for the other files: {_RECOMPILE}")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise fail(edited.format(f"not valid JSON: {e}")) from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise fail(edited.format("not a spikformer-neuro manifest"))
    version = doc.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION:
        raise fail(f"{MANIFEST_FILE} version {version} is newer than this compiler reads "
                   f"({MANIFEST_VERSION}); upgrade spikformer-neuro or {_RECOMPILE}")
    entries = doc.get("files")
    well_formed = (version == MANIFEST_VERSION and isinstance(entries, dict)
                   and set(doc) == {"format", "version", "files", "files_sha256"}
                   and all(_plain_name(n) and n != MANIFEST_FILE and isinstance(e, dict)
                           and set(e) == {"bytes", "sha256"} and type(e["bytes"]) is int
                           and isinstance(e["sha256"], str) for n, e in entries.items()))
    if not well_formed:
        raise fail(edited.format("malformed entries"))
    try:
        canonical = _json_bytes(doc)
    except ValueError:
        canonical = b""
    if canonical != raw or doc.get("files_sha256") != _entries_digest(entries):
        raise fail(edited.format("its content is not what the compiler wrote"))
    for name in (GRAPH_FILE, TENSOR_FILE):
        if name not in entries:
            raise fail(edited.format(f"it does not list {name}"))
    found: Dict[str, bytes] = {}
    for name, entry in sorted(entries.items()):
        file = directory / name
        if not file.is_file():
            raise fail(f"{name}, listed in {MANIFEST_FILE}, is missing: the artifact is "
                       f"incomplete; {_RECOMPILE}")
        data = file.read_bytes()
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            raise fail(f"{name} does not match its checksum in {MANIFEST_FILE}: it was "
                       f"edited, truncated or corrupted after compilation; {_RECOMPILE}")
        found[name] = data
    return found


# -- files and directories ---------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_build_dir(target: Union[str, Path]) -> Path:
    """An empty sibling directory to build ``target`` in (normal permissions, unlike mkdtemp's).

    Its name carries this process's id (``.<name>.build-<pid>-*``): build directories of the
    same target left by a process that no longer exists (killed with SIGKILL mid-write, when no
    cleanup can run) are removed first, so they never accumulate."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_build_dirs(target)
    build = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-{os.getpid()}-"))
    os.chmod(build, 0o777 & ~_umask())
    return build


def remove_stale_build_dirs(target: Union[str, Path]) -> List[Path]:
    """Delete ``.<name>.build-<pid>-*`` siblings of ``target`` whose process is gone."""
    target = Path(target)
    removed = []
    for path in target.parent.glob(f".{target.name}.build-*-*"):
        pid = path.name[len(f".{target.name}.build-"):].split("-", 1)[0]
        if not pid.isdigit() or not path.is_dir() or path.is_symlink() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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


def save_artifact(graph: Graph, directory: Union[str, Path],
                  extra: Optional[Mapping[str, bytes]] = None) -> Path:
    """Write graph.json, tensors.bin, the ``extra`` files (name -> bytes, e.g. report.json)
    and, last, manifest.json listing them all into ``directory`` (each file atomically)."""
    directory = Path(directory)
    graph_json, tensors = graph_to_bytes(graph)
    files = {TENSOR_FILE: tensors, GRAPH_FILE: graph_json}
    for name, data in (extra or {}).items():
        if name in files or name == MANIFEST_FILE:
            raise ValueError(f"extra artifact file {name!r} would replace a file save_artifact "
                             "writes itself")
        files[name] = bytes(data)
    manifest = manifest_bytes(files)   # checks the names before anything is written
    for name, data in files.items():
        write_atomic(directory / name, data)
    write_atomic(directory / MANIFEST_FILE, manifest)
    return directory


def save_graph(graph: Graph, directory: Union[str, Path]) -> Path:
    """Write graph.json, tensors.bin and their manifest into ``directory`` (each file
    atomically, the manifest last)."""
    return save_artifact(graph, directory)


def load_graph(directory: Union[str, Path]) -> Graph:
    """The graph of an artifact directory, after every file its manifest lists has been
    checked (:func:`verify_artifact`)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise IRError(f"{directory} is a file, not a compiled artifact directory "
                      "(spikeform-compile writes one)")
    for name in (GRAPH_FILE, TENSOR_FILE):
        if not (directory / name).is_file():
            raise IRError(f"{directory}: missing {name}; is this a compiled artifact directory? "
                          "(spikeform-compile writes one)")
    files = verify_artifact(directory)
    return graph_from_bytes(files[GRAPH_FILE], files[TENSOR_FILE], str(directory))


class ForeignFilesError(FileExistsError):
    """An output directory holds files the command did not write; replacing it would delete
    them. ``names`` lists them."""

    def __init__(self, message: str, names: List[str]):
        super().__init__(message)
        self.names = names


def _show(names: List[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def foreign_entries(target: Path, owned: Callable[[Path], Optional[Collection[str]]]
                    ) -> List[str]:
    """The entries of the directory ``target`` that an earlier output did not write:
    ``owned(target)`` names the files the command writes when ``target`` is an earlier
    output of it, or is None when it is not (then every entry is foreign)."""
    entries = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "")
                     for p in Path(target).iterdir())
    if not entries:
        return []
    names = owned(Path(target))
    if names is None:
        return entries
    return [e for e in entries if e not in names]


def replace_directory_atomic(build: Path, target: Path, *,
                             owned: Callable[[Path], Optional[Collection[str]]]) -> None:
    """Move a fully written ``build`` directory to ``target``. An old ``target`` is replaced
    only when it is empty or holds nothing but files ``owned(target)`` says an earlier
    output of the same command wrote; anything else (a user's notes.txt in an artifact
    directory) is refused with :class:`ForeignFilesError` naming it, even if a caller's
    earlier check passed and the directory changed since. Only the owned files of the old
    output are deleted, never a directory tree: a file that appears in the old directory
    during the swap is left there (in ``.<name>.old-*``), never deleted."""
    target = Path(target)
    old = None
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise FileExistsError(f"{target} exists and is not a directory; refusing to replace "
                                  "(and delete) it: choose another output")
        foreign = foreign_entries(target, owned)
        if foreign:
            raise ForeignFilesError(
                f"{target} holds {_show(foreign)}, which this command did not write; "
                "replacing the directory would delete them: move them elsewhere or choose "
                "another output", foreign)
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.rmdir(old)
        os.replace(target, old)
        removable = set(owned(old) or ())
        foreign = foreign_entries(old, owned)   # written between the check and the rename
        if foreign:
            os.replace(old, target)
            raise ForeignFilesError(
                f"{target} holds {_show(foreign)}, which this command did not write; "
                "replacing the directory would delete them: move them elsewhere or choose "
                "another output", foreign)
    try:
        os.replace(build, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        for name in removable:
            path = old / name
            if not path.is_symlink() and path.is_file():
                path.unlink(missing_ok=True)
        try:
            os.rmdir(old)
        except OSError:
            pass   # something appeared meanwhile: left in place, never deleted
