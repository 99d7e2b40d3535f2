"""graph.json + tensors.bin + manifest.json: deterministic bytes, lossless round trips, every
change to an artifact file detected, output directories swapped without losing a user's file,
clear errors."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler import serialize
from compiler.float_exec import run_float
from compiler.frontend import checkpoint_to_ir, model_to_ir
from compiler.ir import IRError
from compiler.passes import fold_batchnorm, maxpool_to_sumpool
from compiler.serialize import (GRAPH_FILE, MANIFEST_FILE, TENSOR_FILE, IntegrityError,
                                graph_from_bytes, graph_to_bytes, load_graph, manifest_bytes,
                                save_artifact, save_graph, verify_artifact)
from spikformer_neuro.checkpoint import save_checkpoint
from spikformer_neuro.testing import firing_model


def make_model(name="test-micro", seed=0):
    return firing_model(name, seed, bn_seed=seed + 1)


def compile_float(graph):
    return maxpool_to_sumpool(fold_batchnorm(graph))


def dir_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def graph():
    return model_to_ir(make_model())


@pytest.fixture
def saved(tmp_path, graph):
    return save_graph(graph, tmp_path / "art")


def test_same_model_gives_identical_bytes_twice(graph):
    again = model_to_ir(make_model())  # rebuilt from the same seed
    assert graph_to_bytes(graph) == graph_to_bytes(again)
    assert graph_to_bytes(compile_float(graph)) == graph_to_bytes(compile_float(again))
    assert graph_to_bytes(model_to_ir(make_model(seed=1))) != graph_to_bytes(graph)


def test_compile_twice_into_two_dirs_is_byte_identical(tmp_path):
    ckpt = save_checkpoint(tmp_path / "micro.pth", model=make_model("test-micro-events"),
                           dataset="synthetic", class_names=["a", "b", "c", "d"])
    a = save_graph(compile_float(checkpoint_to_ir(ckpt)), tmp_path / "a")
    b = save_graph(compile_float(checkpoint_to_ir(ckpt)), tmp_path / "b")
    files_a, files_b = dir_bytes(a), dir_bytes(b)
    assert sorted(files_a) == [GRAPH_FILE, MANIFEST_FILE, TENSOR_FILE]  # no temporary files
    assert files_a == files_b
    doc = json.loads(files_a[GRAPH_FILE])
    assert doc["meta"]["passes"] == ["fold_batchnorm", "maxpool_to_sumpool"]
    assert str(tmp_path) not in files_a[GRAPH_FILE].decode()  # no paths, no timestamps


@pytest.mark.parametrize("passes", [False, True])
def test_round_trip_gives_identical_float_outputs(tmp_path, graph, passes):
    g = compile_float(graph) if passes else graph
    loaded = load_graph(save_graph(g, tmp_path / "rt"))
    assert list(loaded.nodes) == list(g.nodes)
    for node in g:
        other = loaded[node.name]
        assert (other.op, other.inputs, other.shape, other.attrs) == \
            (node.op, node.inputs, node.shape, node.attrs)
        for k, v in node.params.items():
            assert other.params[k].dtype == v.dtype  # float64 folded params stay float64
            assert np.array_equal(other.params[k], v)
    assert loaded.meta == g.meta
    assert graph_to_bytes(loaded) == graph_to_bytes(g)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.float64):
        a = run_float(g, x, record=True, dtype=dtype)
        b = run_float(loaded, x, record=True, dtype=dtype)
        assert torch.equal(a.logits, b.logits)
        for name in a.outputs:
            assert torch.equal(a.outputs[name], b.outputs[name]), name


def test_corrupted_tensors_are_detected(saved):
    path = saved / TENSOR_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(IRError, match="tensors.bin does not match its checksum"):
        load_graph(saved)
    path.write_bytes(bytes(data[: len(data) // 3]))  # truncated
    with pytest.raises(IRError, match="tensors.bin does not match its checksum"):
        load_graph(saved)


def _reseal(saved):
    """Rewrite the manifest for the files as they are now: what a forger, a future version or
    a bug in the writer would produce. graph_from_bytes must still refuse bad content."""
    files = {n: (saved / n).read_bytes() for n in (GRAPH_FILE, TENSOR_FILE)}
    (saved / MANIFEST_FILE).write_bytes(manifest_bytes(files))


def test_truncated_graph_json_is_detected(saved):
    path = saved / GRAPH_FILE
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    with pytest.raises(IntegrityError, match=r"graph.json does not match its checksum in "
                                             r"manifest.json.*recompile"):
        load_graph(saved)
    _reseal(saved)  # behind the manifest, the parser itself refuses it
    with pytest.raises(IRError, match=r"graph.json is not valid JSON.*recompile"):
        load_graph(saved)
    path.write_bytes(b"\xff\xfe garbage")
    _reseal(saved)
    with pytest.raises(IRError, match="graph.json is not valid JSON"):
        load_graph(saved)


def _edit(saved, fn):
    path = saved / GRAPH_FILE
    doc = json.loads(path.read_bytes())
    fn(doc)
    path.write_text(json.dumps(doc))
    _reseal(saved)


def test_wrong_format_and_version_are_detected(saved):
    _edit(saved, lambda d: d.update(format="onnx"))
    with pytest.raises(IRError, match="not a spikformer-neuro graph.*'onnx'"):
        load_graph(saved)
    _edit(saved, lambda d: d.update(format=serialize.IR_FORMAT, version=99))
    with pytest.raises(IRError, match="version 99 is not supported"):
        load_graph(saved)
    (saved / GRAPH_FILE).write_text("[1, 2, 3]")
    _reseal(saved)
    with pytest.raises(IRError, match="not a spikformer-neuro graph"):
        load_graph(saved)


def test_malformed_entries_are_detected(saved):
    _edit(saved, lambda d: d["nodes"][3].pop("shape"))
    with pytest.raises(IRError, match="malformed graph entry.*shape"):
        load_graph(saved)


def test_bad_graph_structure_names_the_node(saved):
    _edit(saved, lambda d: d["nodes"][1].update(op="warp_drive"))
    with pytest.raises(IRError, match="sps.stages.0.conv.*unknown op"):
        load_graph(saved)


@pytest.mark.parametrize("missing", [GRAPH_FILE, TENSOR_FILE])
def test_missing_files_are_named(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(IRError, match=f"missing {missing}"):
        load_graph(saved)


def test_missing_directory(tmp_path):
    with pytest.raises(IRError, match="missing graph.json"):
        load_graph(tmp_path / "nowhere")


def _boom(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_write_failure_leaves_no_partial_file(tmp_path, graph, monkeypatch, where):
    target = tmp_path / "art"
    monkeypatch.setattr(serialize.os, where, _boom)
    with pytest.raises(OSError, match="No space"):
        save_graph(graph, target)
    monkeypatch.undo()
    assert list(target.iterdir()) == []  # neither a partial file nor a temporary one


def test_write_failure_keeps_the_old_artifact(tmp_path, graph, monkeypatch):
    target = save_graph(graph, tmp_path / "art")
    old = dir_bytes(target)
    new_graph = compile_float(graph)
    real_write = os.fdopen

    class HalfWriter:  # writes half of the data, then the disk is full
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(serialize.os, "fdopen", lambda fd, mode: HalfWriter(real_write(fd, mode)))
    with pytest.raises(OSError, match="No space"):
        save_graph(new_graph, target)
    monkeypatch.undo()
    assert dir_bytes(target) == old  # old files intact, no temporary left behind
    assert graph_to_bytes(load_graph(target)) == graph_to_bytes(graph)


@pytest.mark.parametrize("failing", [GRAPH_FILE, MANIFEST_FILE])
def test_failure_between_the_files_is_detected_on_load(tmp_path, graph, monkeypatch, failing):
    # save_graph replaces tensors.bin, then graph.json, then the manifest. If a later write
    # fails, the files are inconsistent; the manifest (and the checksum in graph.json) makes
    # load refuse them (never silently pairs old nodes with new tensors).
    target = save_graph(graph, tmp_path / "art")
    real = serialize.write_atomic

    def fails(path, data):
        if path.name == failing:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(serialize, "write_atomic", fails)
    with pytest.raises(OSError):
        save_graph(compile_float(graph), target)
    monkeypatch.undo()
    assert sorted(p.name for p in target.iterdir()) == [GRAPH_FILE, MANIFEST_FILE, TENSOR_FILE]
    with pytest.raises(IntegrityError, match="(graph.json|tensors.bin) does not match its "
                                             "checksum in manifest.json"):
        load_graph(target)


def test_unserialisable_values_are_refused(graph):
    g = graph.copy()
    g["sps.stages.0.lif"].attrs["tau"] = float("nan")
    with pytest.raises(IRError, match=r"sps.stages.0.lif' \(lif\): attribute 'tau' holds 1 NaN"):
        graph_to_bytes(g)
    g = graph.copy()
    g["head"].params["weight"] = g["head"].params["weight"].astype(np.float16)
    with pytest.raises(IRError, match="'head'.*float16"):
        graph_to_bytes(g)
    j, t = graph_to_bytes(graph)
    assert graph_to_bytes(graph_from_bytes(j, t)) == (j, t)


def test_replace_directory_refuses_what_it_would_destroy(tmp_path):
    """The swap itself guards the target, whatever a caller checked earlier: an old output is
    replaced only when every file in it is one the command wrote (``owned``)."""
    def build(name: str):
        d = tmp_path / name
        d.mkdir()
        (d / "new.txt").write_text("new")
        return d

    def owned(d):   # an earlier output holds a marker; the command writes marker and new.txt
        return {"marker", "new.txt"} if (d / "marker").is_file() else None

    target = tmp_path / "out"
    serialize.replace_directory_atomic(build("b1"), target, owned=owned)  # absent
    assert (target / "new.txt").read_text() == "new"
    (target / "marker").write_text("")
    serialize.replace_directory_atomic(build("b2"), target, owned=owned)  # earlier
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    (target / "marker").write_text("")
    (target / "precious.txt").write_text("keep")  # an earlier output plus a user's file
    (target / "sub").mkdir()
    b3 = build("b3")
    with pytest.raises(serialize.ForeignFilesError, match=r"holds precious.txt, sub/, which "
                                                          "this command did not write") as e:
        serialize.replace_directory_atomic(b3, target, owned=owned)
    assert e.value.names == ["precious.txt", "sub/"]
    assert (target / "precious.txt").read_text() == "keep" and b3.is_dir()
    (target / "marker").unlink()   # no marker: not an earlier output, every file is foreign
    with pytest.raises(FileExistsError, match="new.txt, precious.txt, sub/"):
        serialize.replace_directory_atomic(b3, target, owned=owned)
    empty = tmp_path / "empty"
    empty.mkdir()
    serialize.replace_directory_atomic(b3, empty, owned=owned)  # empty: allowed
    assert (empty / "new.txt").is_file()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        serialize.replace_directory_atomic(build("b4"), afile, owned=owned)
    assert afile.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "b4", "empty", "out"]


def test_a_file_appearing_during_the_swap_is_never_deleted(tmp_path, monkeypatch):
    """A file written into the old output between the check and the rename is still seen
    (the check is repeated on the renamed directory) and nothing is replaced; one that
    appears after the swap is left in the old directory instead of being deleted."""
    target, build = tmp_path / "out", tmp_path / "build"
    for d in (target, build):
        d.mkdir()
        (d / "a.txt").write_text(d.name)
    owned = lambda d: {"a.txt"}  # noqa: E731
    real = serialize.os.replace
    calls = []

    def replace_then_write(src, dst):
        real(src, dst)
        calls.append(Path(dst))
        if len(calls) == 1:   # the old output was just renamed aside: a user writes into it
            (Path(dst) / "late.txt").write_text("mine")

    monkeypatch.setattr(serialize.os, "replace", replace_then_write)
    with pytest.raises(serialize.ForeignFilesError, match="late.txt"):
        serialize.replace_directory_atomic(build, target, owned=owned)
    monkeypatch.undo()
    assert (target / "late.txt").read_text() == "mine" and (target / "a.txt").read_text() == "out"
    assert build.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["build", "out"]

    (target / "late.txt").unlink()
    real_unlink = Path.unlink

    def unlink_then_write(self, *a, **k):   # a file appears while the old files are removed
        real_unlink(self, *a, **k)
        (self.parent / "later.txt").write_text("mine too")

    monkeypatch.setattr(Path, "unlink", unlink_then_write)
    serialize.replace_directory_atomic(build, target, owned=owned)
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "build"
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.old-")]
    assert len(left) == 1 and [p.name for p in left[0].iterdir()] == ["later.txt"]


# -- the manifest: every artifact file checked -----------------------------------------------

@pytest.fixture
def artifact(tmp_path, graph):
    return save_artifact(graph, tmp_path / "art", {"report.json": b'{"a": 1}\n'})


def test_the_manifest_lists_every_file_with_its_sha256(artifact):
    import hashlib

    doc = json.loads((artifact / MANIFEST_FILE).read_bytes())
    assert doc["format"] == "spikformer-neuro-manifest" and doc["version"] == 1
    assert sorted(doc["files"]) == [GRAPH_FILE, "report.json", TENSOR_FILE]
    for name, entry in doc["files"].items():
        data = (artifact / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert sorted(verify_artifact(artifact)) == [GRAPH_FILE, "report.json", TENSOR_FILE]
    load_graph(artifact)
    (artifact / "notes.txt").write_text("a user's file is not part of the artifact")
    load_graph(artifact)


def _flip(path, position):
    data = bytearray(path.read_bytes())
    data[position % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", [GRAPH_FILE, TENSOR_FILE, "report.json", MANIFEST_FILE])
def test_every_single_byte_edit_of_every_file_is_detected(artifact, name):
    """One byte changed anywhere (every position of the manifest and report, 2000 positions
    spread over graph.json and tensors.bin; whitespace included, which JSON would ignore):
    the edit is always refused, naming the file."""
    path = artifact / name
    original = path.read_bytes()
    size = len(original)
    positions = range(size) if size <= 2000 else \
        sorted(set(range(0, size, size // 2000)) | {size - 1})
    expected = MANIFEST_FILE if name == MANIFEST_FILE else name
    for i, pos in enumerate(positions):
        data = bytearray(original)
        data[pos] ^= (0x01, 0x20, 0x80, 0x29)[i % 4]   # 0x29: a space becomes a tab
        path.write_bytes(bytes(data))
        with pytest.raises(IntegrityError) as e:
            verify_artifact(artifact)
        assert expected in str(e.value) and "recompile" in str(e.value), (pos, str(e.value))
    path.write_bytes(original)
    load_graph(artifact)


def test_a_manifest_edited_consistently_still_names_the_changed_file(artifact):
    """Editing graph.json and the file's entry together (but not the list digest) is a
    manifest edit; rewriting the whole manifest is caught by graph.json's own checks."""
    doc = json.loads((artifact / MANIFEST_FILE).read_bytes())
    doc["files"][GRAPH_FILE]["bytes"] += 1
    (artifact / MANIFEST_FILE).write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    with pytest.raises(IntegrityError, match="manifest.json was edited"):
        load_graph(artifact)


@pytest.mark.parametrize("change, needle", [
    (lambda d: (d / MANIFEST_FILE).unlink(), "no manifest.json"),
    (lambda d: (d / "report.json").unlink(), "report.json, listed in manifest.json, is missing"),
    (lambda d: (d / MANIFEST_FILE).write_text("[]"), "manifest.json was edited"),
    (lambda d: (d / MANIFEST_FILE).write_bytes(b"\xff"), "manifest.json was edited"),
    (lambda d: (d / MANIFEST_FILE).write_bytes(
        manifest_bytes({GRAPH_FILE: (d / GRAPH_FILE).read_bytes()})), "does not list tensors.bin"),
    (lambda d: (d / MANIFEST_FILE).write_text(
        json.dumps({"format": "spikformer-neuro-manifest", "version": 7})),
     "version 7 is newer than this compiler reads"),
])
def test_missing_or_foreign_manifests_are_refused(artifact, change, needle):
    change(artifact)
    with pytest.raises(IntegrityError, match=needle):
        load_graph(artifact)


def test_manifest_names_must_be_plain_files(artifact):
    with pytest.raises(ValueError, match="not a plain file name"):
        manifest_bytes({"../graph.json": b""})
    with pytest.raises(ValueError, match="would replace"):
        save_artifact(load_graph(artifact), artifact, {MANIFEST_FILE: b"{}"})
    doc = json.loads((artifact / MANIFEST_FILE).read_bytes())
    doc["files"]["../../etc/passwd"] = doc["files"].pop("report.json")
    (artifact / MANIFEST_FILE).write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    with pytest.raises(IntegrityError, match="malformed entries"):
        load_graph(artifact)


def test_non_finite_parameters_name_the_node_and_op(graph):
    g = graph.copy()
    g["sps.stages.0.bn"].params["var"][1] = np.nan
    with pytest.raises(IRError, match=r"node 'sps.stages.0.bn' \(batchnorm\): parameter 'var' "
                                      r"holds 1 NaN value \(first at index \[1\]\)"):
        g.validate()
    g = graph.copy()
    g["head"].params["weight"][0, :2] = [np.inf, -np.inf]
    with pytest.raises(IRError, match=r"'head' \(affine\): parameter 'weight' holds 2 "
                                      r"infinite values"):
        graph_to_bytes(g)
    g = graph.copy()
    g["head"].params["weight"] = g["head"].params["weight"].astype(np.complex64)
    with pytest.raises(IRError, match=r"'head' \(affine\): parameter 'weight' has dtype "
                                      "complex64, not real numbers"):
        g.validate()


def test_build_dirs_left_by_a_killed_process_are_removed(tmp_path):
    """SIGKILL mid-write leaves a hidden build directory (nothing can run after SIGKILL); the
    next build of the same target removes it, and only it."""
    import subprocess
    import sys

    from compiler.serialize import make_build_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    target = tmp_path / "model.compiled"
    stale = tmp_path / f".model.compiled.build-{int(dead.stdout)}-abc"
    live = tmp_path / f".model.compiled.build-{os.getpid()}-def"
    other = tmp_path / f".other.compiled.build-{int(dead.stdout)}-ghi"
    for d in (stale, live, other):
        d.mkdir()
        (d / "graph.json").write_text("{}")
    build = make_build_dir(target)
    assert build.is_dir() and build.name.startswith(f".model.compiled.build-{os.getpid()}-")
    assert not stale.exists() and live.exists() and other.exists()
