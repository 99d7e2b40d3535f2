"""A compiled artifact as bytes, for processes that do not share this one's file system.

Workers and Ray tasks get the artifact's files themselves (``graph.json``, ``tensors.bin``,
``report.json`` and ``manifest.json``), never a path: a Ray node on another machine has no
access to it, and a local worker reading the directory later could see another compilation.
Each receiver checks what arrived before using it (:meth:`ArtifactFiles.graph`): the SHA-256
of ``manifest.json`` against the digest the sender passed separately, then every file
against the manifest (``compiler.serialize.manifest_bytes`` recomputed from the files must
give the same manifest, byte for byte), then the tensors against ``graph.json``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

from compiler.ir import Graph
from compiler.serialize import (GRAPH_FILE, MANIFEST_FILE, TENSOR_FILE, IntegrityError,
                                graph_from_bytes, graph_to_bytes, manifest_bytes,
                                verify_artifact)


class ArtifactFiles:
    """The files of a compiled artifact (name -> bytes), with its manifest."""

    def __init__(self, files: Mapping[str, bytes], source: str,
                 graph: Optional[Graph] = None):
        if MANIFEST_FILE not in files:
            raise ValueError(f"{source}: the files carry no {MANIFEST_FILE}")
        self.files: Dict[str, bytes] = dict(files)
        self.source = source
        self._graph = graph          # decoded once; never shipped (see __getstate__)

    @classmethod
    def read(cls, directory: Union[str, Path]) -> "ArtifactFiles":
        """The files of an artifact directory, each checked against its manifest
        (``compiler.serialize.verify_artifact``: an ``IntegrityError`` naming the file)."""
        directory = Path(directory)
        files = verify_artifact(directory)
        files[MANIFEST_FILE] = (directory / MANIFEST_FILE).read_bytes()
        return cls(files, str(directory))

    @classmethod
    def of_graph(cls, graph: Graph, source: str = "<compiled graph>") -> "ArtifactFiles":
        """The files ``compiler.serialize.save_graph`` would write for ``graph`` (for a graph
        that was never saved, e.g. spikeform-compile's before its verification)."""
        graph_json, tensors = graph_to_bytes(graph)
        files = {GRAPH_FILE: graph_json, TENSOR_FILE: tensors}
        files[MANIFEST_FILE] = manifest_bytes(files)
        return cls(files, source, graph)

    @property
    def manifest_sha256(self) -> str:
        """What the receiver checks the shipped manifest against (send it separately)."""
        return hashlib.sha256(self.files[MANIFEST_FILE]).hexdigest()

    @property
    def nbytes(self) -> int:
        return sum(len(data) for data in self.files.values())

    def graph(self, manifest_sha256: Optional[str] = None) -> Graph:
        """The artifact's graph, after checking the files (``manifest_sha256``: the digest
        the sender gave for ``manifest.json``). An ``IntegrityError`` names what differs."""
        if self._graph is None:
            self.verify(manifest_sha256)
            self._graph = graph_from_bytes(self.files[GRAPH_FILE], self.files[TENSOR_FILE],
                                           self.source)
        return self._graph

    def verify(self, manifest_sha256: Optional[str] = None) -> None:
        manifest = self.files[MANIFEST_FILE]
        if manifest_sha256 is not None and \
                hashlib.sha256(manifest).hexdigest() != manifest_sha256:
            raise IntegrityError(f"{self.source}: the {MANIFEST_FILE} that arrived is not the "
                                 "one that was sent (its SHA-256 differs)")
        others = {name: data for name, data in self.files.items() if name != MANIFEST_FILE}
        if manifest_bytes(others) == manifest:
            return
        try:
            listed = dict(json.loads(manifest)["files"])
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{self.source}: its {MANIFEST_FILE} is not a manifest") from None
        for name in sorted(set(listed) | set(others)):
            data = others.get(name)
            entry = listed.get(name)
            if data is None or not isinstance(entry, dict) or \
                    hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise IntegrityError(f"{self.source}: {name} does not match the artifact's "
                                     f"{MANIFEST_FILE} (changed or lost on the way)")
        raise IntegrityError(f"{self.source}: the files do not match the artifact's "
                             f"{MANIFEST_FILE}")

    def __getstate__(self):
        return {"files": self.files, "source": self.source, "_graph": None}
