"""Round trip: float IR -> our NIR export -> our importer gives back exactly the same float IR,
and compiling it gives a byte-identical artifact (graph.json + tensors.bin); files that were
changed after export, are corrupt, or hold unknown node types are refused by name."""
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from compiler.frontend import checkpoint_to_ir, model_to_ir
from compiler.ir import IRError, OptionError
from compiler.nir import read_nir_file, write_nir_file
from compiler.passes import float_passes
from compiler.pipeline import compile_graph, load_source
from compiler.serialize import graph_to_bytes
from spikformer_neuro.checkpoint import save_checkpoint
from spikformer_neuro.data import load_dataset
from spikformer_neuro.testing import firing_model

from support.paths import DIGITS_CKPT, ROOT
DIGITS = DIGITS_CKPT


def _roundtrip(graph, path):
    write_nir_file(graph, path)
    return read_nir_file(path)


def test_digits_float_ir_comes_back_exactly(tmp_path):
    folded = float_passes(checkpoint_to_ir(DIGITS))
    back = _roundtrip(folded, tmp_path / "d.nir")
    assert list(back.nodes) == list(folded.nodes)
    for a, b in zip(folded, back):
        assert (a.name, a.op, a.inputs, a.shape) == (b.name, b.op, b.inputs, b.shape)
        assert a.attrs == b.attrs, a.name
        assert sorted(a.params) == sorted(b.params), a.name
        for k in a.params:
            assert a.params[k].dtype == b.params[k].dtype, (a.name, k)
            assert np.array_equal(a.params[k], b.params[k]), (a.name, k)
    assert graph_to_bytes(back) == graph_to_bytes(folded)   # meta included, byte for byte


def _digits_calibration(n=64):
    ds, _ = load_dataset("digits", "train", img_size=8)
    return torch.stack([ds[i][0] for i in range(n)])


def test_digits_compiles_to_a_byte_identical_artifact(tmp_path):
    """checkpoint -> compile  ==  checkpoint -> float IR -> .nir -> load_source -> compile."""
    calib = _digits_calibration()
    direct = compile_graph(checkpoint_to_ir(DIGITS), calib)
    write_nir_file(float_passes(checkpoint_to_ir(DIGITS)), tmp_path / "d.nir")
    src = load_source(tmp_path / "d.nir")
    assert (src.kind, src.dataset, src.img_size, src.time_steps, src.model) == (
        "nir", "digits", 8, 4, "digits-tiny")
    assert src.hints == direct.float_graph.meta["loihi_hints"]
    via_nir = compile_graph(src.graph, calib)
    assert graph_to_bytes(via_nir.quantized) == graph_to_bytes(direct.quantized)


@pytest.mark.parametrize("overflow", ["worst-case", "calibrated"])
def test_random_attention_model_with_several_heads_roundtrips(tmp_path, overflow):
    model = firing_model("test-micro", seed=3, embed_dim=32, num_heads=4, depth=2)
    ckpt_path = save_checkpoint(tmp_path / "m.pth", model=model, dataset="digits",
                                class_names=[str(i) for i in range(model.cfg.num_classes)])
    src = load_source(ckpt_path)
    heads = {n.attrs["num_heads"] for n in src.graph.by_op("spiking_attention")}
    assert heads == {4} and len(src.graph.by_op("spiking_attention")) == 2
    folded = float_passes(src.graph)
    back = _roundtrip(folded, tmp_path / "m.nir")
    assert graph_to_bytes(back) == graph_to_bytes(folded)
    calib = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    direct = compile_graph(src.graph, calib, overflow)
    via_nir = compile_graph(back, calib, overflow)
    assert graph_to_bytes(via_nir.quantized) == graph_to_bytes(direct.quantized)


def test_meta_values_nir_cannot_store_survive(tmp_path):
    """None, nested lists and lists of strings in the graph meta (NIR metadata cannot hold
    None and turns lists into arrays) come back as they were."""
    model = firing_model("test-micro-events", seed=1)
    g = float_passes(model_to_ir(model, {"dataset": None, "class_names": ["a", "b", "c", "d"],
                                         "nested": [[1, 2], {"x": None}]}))
    back = _roundtrip(g, tmp_path / "e.nir")
    assert back.meta["dataset"] is None and back.meta["nested"] == [[1, 2], {"x": None}]
    assert back.input_node.attrs["encoding"] == "spikes"
    assert graph_to_bytes(back) == graph_to_bytes(g)


# -- files we must refuse ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("x") / "d.nir"
    write_nir_file(float_passes(checkpoint_to_ir(DIGITS)), path)
    return path


def _edited(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f["node"])
    return dst


def _replace(group, key, value):
    del group[key]
    group.create_dataset(key, data=value)


def test_a_stock_field_changed_after_export_is_refused_by_name(exported, tmp_path):
    def halve_tau(root):
        lif = root["nodes"]["sps.rpe.lif"]
        _replace(lif, "tau", lif["tau"][()] * 0.5)

    path = _edited(exported, tmp_path / "t.nir", halve_tau)
    nir.read(path)  # still a valid stock file
    with pytest.raises(IRError, match=r"t\.nir: node 'sps\.rpe\.lif' \(LIF\): field 'tau'"):
        read_nir_file(path)


def test_a_changed_edge_is_refused(exported, tmp_path):
    def rewire(root):
        edges = [tuple(e) for e in root["edges"][()]]
        edges = [(b"blocks.0.attn.v.lif", b) if b == b"blocks.0.attn.q.linear" and
                 a == b"sps.rpe.lif" else (a, b) for a, b in edges]
        _replace(root, "edges", np.array(edges, dtype=h5py.string_dtype()))

    path = _edited(exported, tmp_path / "e.nir", rewire)
    nir.read(path)  # still a valid stock file
    with pytest.raises(IRError, match="edges differ"):
        read_nir_file(path)


@pytest.mark.parametrize("node, key, value, match", [
    # the registry (through Graph.validate) decides which params and attrs an op takes
    ("sps.rpe.lif", "spikeform.params", '["tau"]',
     r"'sps\.rpe\.lif' \(lif\): unknown parameter 'tau'"),
    ("head", "spikeform.params", '["metadata"]', r"'head': param 'metadata' cannot be carried"),
    ("sps.rpe.lif", "spikeform.attrs", '{"tau": 2.0, "v_threshold": 1.0, "gain": 4}',
     r"'sps\.rpe\.lif' \(lif\): unknown attribute 'gain'"),
    ("sps.rpe.lif", "spikeform.op", "loihi_lif", r"IR op 'loihi_lif' in its metadata is not "
                                                 r"written as a NIR node"),
])
def test_metadata_that_breaks_the_registry_is_refused(exported, tmp_path, node, key, value,
                                                      match):
    g = nir.read(exported)
    g.nodes[node].metadata[key] = value
    nir.write(tmp_path / "m.nir", g)
    with pytest.raises(IRError, match=r"m\.nir: .*" + match):
        read_nir_file(tmp_path / "m.nir")


def test_unknown_node_type_is_named(exported, tmp_path):
    def retype(root):
        _replace(root["nodes"]["sps.pool3"], "type", b"MaxPool2d")

    path = _edited(exported, tmp_path / "u.nir", retype)
    with pytest.raises(IRError, match=r"u\.nir: node\(s\) 'sps\.pool3' \(MaxPool2d\)"):
        read_nir_file(path)


def test_missing_and_corrupt_files_are_named(exported, tmp_path):
    with pytest.raises(IRError, match=r"nope\.nir: no such NIR file"):
        read_nir_file(tmp_path / "nope.nir")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(IRError, match=r"bad\.nir: not a readable NIR"):
        read_nir_file(bad)
    cut = tmp_path / "cut.nir"
    cut.write_bytes(exported.read_bytes()[:5000])
    with pytest.raises(IRError, match=r"cut\.nir"):
        read_nir_file(cut)


def test_a_file_of_another_format_version_is_refused(exported, tmp_path):
    """Version 1 wrote Threshold, padded SumPool2d and AvgPool2d nodes; version 2 does not."""
    g = nir.read(exported)
    g.metadata["spikeform.version"] = 1
    nir.write(tmp_path / "v1.nir", g)
    with pytest.raises(IRError, match=r"v1\.nir: spikeform NIR version .*1.* is not supported"
                                      r".*re-export"):
        read_nir_file(tmp_path / "v1.nir")


def test_a_portable_fragment_is_not_a_network(tmp_path):
    write_nir_file(float_passes(checkpoint_to_ir(DIGITS)), tmp_path / "p.nir", portable=True)
    with pytest.raises(IRError, match=r"p\.nir: a portable export holds only part"):
        read_nir_file(tmp_path / "p.nir")


def test_contradicting_options_are_refused_for_our_files(exported):
    """OptionErrors naming the parameter (the CLI adds its flag), never a flag."""
    cases = [(dict(time_steps=8), "time_steps",
              "exported with 4 time steps; time_steps 8 contradicts it"),
             (dict(dataset="mnist"), "dataset",
              "exported with the data set 'digits'; dataset 'mnist' contradicts it"),
             (dict(convention="snntorch"), "nir_convention",
              "nir_convention 'snntorch' does not apply"),
             (dict(dt=1e-3), "nir_dt", "nir_dt 0.001 does not apply")]
    for kwargs, option, needle in cases:
        with pytest.raises(OptionError, match=needle) as err:
            read_nir_file(exported, **kwargs)
        assert err.value.option == option and "--" not in str(err.value)
    ok = read_nir_file(exported, time_steps=4, dataset="digits", convention="spikeform", dt=1.0)
    assert ok.meta["dataset"] == "digits"


def test_generalised_lif_attrs_roundtrip_and_reach_the_stock_fields(tmp_path):
    """A LIF with an input gain r and NIR's own firing rule (what foreign graphs bring)."""
    g = float_passes(checkpoint_to_ir(DIGITS))
    g["sps.rpe.lif"].attrs.update(r=2.0, spike_if=">")
    write_nir_file(g, tmp_path / "g.nir")
    lif = nir.read(tmp_path / "g.nir").nodes["sps.rpe.lif"]
    assert np.all(lif.r == 2.0) and lif.metadata["spikeform.spike_if"] == ">"
    assert lif.metadata["spikeform.stock_exact"] == "exact"
    back = read_nir_file(tmp_path / "g.nir")
    assert back["sps.rpe.lif"].attrs == {"tau": 2.0, "v_threshold": 1.0, "r": 2.0,
                                         "spike_if": ">"}
    assert "r" not in back["sps.stages.0.lif"].attrs  # absent attrs stay absent
    assert graph_to_bytes(back) == graph_to_bytes(g)
