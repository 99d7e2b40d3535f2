"""graph.json + tensors.bin: deterministic bytes, lossless round trips, clear errors."""
import json
import os

import numpy as np
import pytest
import torch

from compiler import serialize
from compiler.float_exec import run_float
from compiler.frontend import checkpoint_to_ir, model_to_ir
from compiler.ir import IRError
from compiler.passes import fold_batchnorm, maxpool_to_sumpool
from compiler.serialize import (GRAPH_FILE, TENSOR_FILE, graph_from_bytes, graph_to_bytes,
                                load_graph, save_graph)
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
    assert sorted(files_a) == [GRAPH_FILE, TENSOR_FILE]  # no temporary files left behind
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


def test_truncated_graph_json_is_detected(saved):
    path = saved / GRAPH_FILE
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    with pytest.raises(IRError, match=r"graph.json is not valid JSON.*recompile"):
        load_graph(saved)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(IRError, match="graph.json is not valid JSON"):
        load_graph(saved)


def _edit(saved, fn):
    path = saved / GRAPH_FILE
    doc = json.loads(path.read_bytes())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_wrong_format_and_version_are_detected(saved):
    _edit(saved, lambda d: d.update(format="onnx"))
    with pytest.raises(IRError, match="not a spikformer-neuro graph.*'onnx'"):
        load_graph(saved)
    _edit(saved, lambda d: d.update(format=serialize.IR_FORMAT, version=99))
    with pytest.raises(IRError, match="version 99 is not supported"):
        load_graph(saved)
    (saved / GRAPH_FILE).write_text("[1, 2, 3]")
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


def test_failure_between_the_two_files_is_detected_on_load(tmp_path, graph, monkeypatch):
    # save_graph replaces tensors.bin, then graph.json. If only the second write fails, the
    # pair is inconsistent; the checksum in graph.json makes load refuse it (never silently
    # pairs old nodes with new tensors).
    target = save_graph(graph, tmp_path / "art")
    real = serialize.write_atomic

    def second_fails(path, data):
        if path.name == GRAPH_FILE:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(serialize, "write_atomic", second_fails)
    with pytest.raises(OSError):
        save_graph(compile_float(graph), target)
    monkeypatch.undo()
    assert sorted(p.name for p in target.iterdir()) == [GRAPH_FILE, TENSOR_FILE]
    with pytest.raises(IRError, match="checksum"):
        load_graph(target)


def test_unserialisable_values_are_refused(graph):
    g = graph.copy()
    g["sps.stages.0.lif"].attrs["tau"] = float("nan")
    with pytest.raises(IRError, match="sps.stages.0.lif.*non-finite"):
        graph_to_bytes(g)
    g = graph.copy()
    g["head"].params["weight"] = g["head"].params["weight"].astype(np.float16)
    with pytest.raises(IRError, match="'head'.*float16"):
        graph_to_bytes(g)
    j, t = graph_to_bytes(graph)
    assert graph_to_bytes(graph_from_bytes(j, t)) == (j, t)


def test_replace_directory_refuses_what_it_would_destroy(tmp_path):
    """The swap itself guards the target, whatever a caller checked earlier."""
    def build(name: str):
        d = tmp_path / name
        d.mkdir()
        (d / "new.txt").write_text("new")
        return d

    is_earlier = lambda d: (d / "marker").is_file()  # noqa: E731
    target = tmp_path / "out"
    serialize.replace_directory_atomic(build("b1"), target, replaceable=is_earlier)  # absent
    assert (target / "new.txt").read_text() == "new"
    (target / "marker").write_text("")
    serialize.replace_directory_atomic(build("b2"), target, replaceable=is_earlier)  # earlier
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    (target / "precious.txt").write_text("keep")  # no marker: not an earlier output
    b3 = build("b3")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        serialize.replace_directory_atomic(b3, target, replaceable=is_earlier)
    assert (target / "precious.txt").read_text() == "keep" and b3.is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    serialize.replace_directory_atomic(b3, empty, replaceable=is_earlier)  # empty: allowed
    assert (empty / "new.txt").is_file()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(FileExistsError):
        serialize.replace_directory_atomic(build("b4"), afile, replaceable=is_earlier)
    assert afile.read_text() == "x"
