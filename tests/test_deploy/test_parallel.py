"""deploy.parallel: shards, the artifact as shipped bytes, and local workers / Ray tasks whose
merged results equal one process's -- every logit and every probed spike, in order -- and
which leave no process and no shared-memory segment behind when a worker fails or the run
is interrupted."""
from __future__ import annotations

import os
import pickle
import threading
import time

import numpy as np
import pytest

from compiler.encoding import encode_integer
from compiler.ir import IRError
from compiler.serialize import GRAPH_FILE, TENSOR_FILE, load_graph, save_graph
from deploy.lava import lower
from deploy.parallel import (ArtifactFiles, WorkerFailed, array_inputs, plan_shards,
                             run_in_process, run_local_workers, run_on_ray, parse_cluster)
from deploy.parallel.results import pack, unpack
from support.processes import alive, descendants, segments_of
from support.requirements import require_ray


# -- shards and packing -------------------------------------------------------------------------
def test_shards_are_contiguous_balanced_and_never_empty():
    for count in (1, 2, 7, 10):
        for workers in (1, 2, 3, 4, 12):
            shards = plan_shards(count, workers, sample_ids=range(100, 100 + count))
            assert len(shards) == min(workers, count)
            assert [s.index for s in shards] == list(range(len(shards)))
            assert sum((list(range(s.start, s.stop)) for s in shards), []) == list(range(count))
            sizes = [s.size for s in shards]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
            assert all((s.first, s.last) == (100 + s.start, 100 + s.stop - 1) for s in shards)
    assert plan_shards(10, 2)[1].describe() == "worker 1 (samples 5..9)"
    with pytest.raises(ValueError, match="workers must be >= 1"):
        plan_shards(3, 0)


@pytest.mark.parametrize("array", [np.array([[0, 1], [1, 0]]), np.array([-300, 5, 70000]),
                                   np.zeros((0, 3), np.int64), np.array([0.5, -1.25])])
def test_packing_is_lossless_and_keeps_the_dtype(array):
    packed = pickle.loads(pickle.dumps(pack(array)))
    back = unpack(packed)
    assert back.dtype == array.dtype and np.array_equal(back, array)
    if array.dtype.kind == "i" and array.size and array.max() <= 1 and array.min() >= 0:
        assert packed[0].itemsize == 1      # spikes travel as bytes


# -- the artifact as bytes ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro(micro_quantized, tmp_path_factory):
    """(artifact directory, graph, encoded inputs [T, 6, ...]) of test-micro."""
    graph, x = micro_quantized
    directory = save_graph(graph, tmp_path_factory.mktemp("micro") / "micro.compiled")
    return directory, load_graph(directory), encode_integer(graph, x)


def test_artifact_files_arrive_checked(micro):
    directory, graph, _ = micro
    shipped = pickle.loads(pickle.dumps(ArtifactFiles.read(directory)))
    assert shipped._graph is None                      # bytes travel, not a decoded graph
    assert shipped.graph(ArtifactFiles.read(directory).manifest_sha256).nodes.keys() == \
        graph.nodes.keys()
    # an in-memory graph (spikeform-compile's, before it is saved) ships the same files
    of_graph = ArtifactFiles.of_graph(graph)
    for name in (GRAPH_FILE, TENSOR_FILE):
        assert of_graph.files[name] == shipped.files[name]


@pytest.mark.parametrize("name", [GRAPH_FILE, TENSOR_FILE])
def test_a_changed_byte_is_refused_naming_the_file(micro, name):
    files = dict(ArtifactFiles.read(micro[0]).files)
    files[name] = files[name][:-1] + bytes([files[name][-1] ^ 1])
    with pytest.raises(IRError, match=f"{name} does not match the artifact's manifest.json"):
        ArtifactFiles(files, "shipped").graph()


def test_a_manifest_other_than_the_one_sent_is_refused(micro):
    art = ArtifactFiles.read(micro[0])
    with pytest.raises(IRError, match="not the one that was sent"):
        ArtifactFiles(art.files, "shipped").graph("0" * 64)


# -- local workers ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_process(micro):
    _, graph, x_seq = micro
    probes = [n.name for n in graph.by_op("loihi_lif")]
    res = run_in_process(lower(graph), array_inputs(x_seq), x_seq.shape[1], chunk=4,
                         probes=probes)
    return probes, res


def _assert_same(res, base):
    assert res.logits.dtype == base.logits.dtype
    assert np.array_equal(res.logits, base.logits)
    assert res.outputs.keys() == base.outputs.keys()
    for name, spikes in base.outputs.items():
        assert res.outputs[name].dtype == spikes.dtype
        assert np.array_equal(res.outputs[name], spikes), name


@pytest.mark.parametrize("workers, chunk", [(2, None), (3, 1)])
def test_workers_equal_one_process_every_spike_in_order(micro, one_process, workers, chunk):
    _, graph, x_seq = micro
    probes, base = one_process
    done = []
    res = run_local_workers(ArtifactFiles.of_graph(graph), array_inputs(x_seq),
                            x_seq.shape[1], workers=workers, chunk=chunk, probes=probes,
                            on_samples=done.append)
    _assert_same(res, base)
    assert sum(done) == x_seq.shape[1]
    assert [(w.shard.start, w.shard.stop) for w in res.workers] == \
        [(s.start, s.stop) for s in plan_shards(x_seq.shape[1], workers)]
    assert res.num_steps == sum(w.num_steps for w in res.workers)
    assert res.run_s == max(w.run_s for w in res.workers)


class _Watch:
    """The processes this test process starts during a run (workers and their Lava
    workers) and the segments they map, watched from a thread; afterwards they must be gone."""

    def __init__(self):
        self.before = descendants(os.getpid())
        self.seen, self.segments = set(), set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            pids = descendants(os.getpid()) - self.before
            self.seen |= pids
            self.segments |= segments_of(pids)
            time.sleep(0.05)

    def assert_gone(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join()
        assert self.seen and self.segments, "no worker and no Lava segment seen"
        deadline = time.monotonic() + grace_s
        while (alive(self.seen) or self._left()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive(self.seen) == [], "processes survived the run"
        assert self._left() == [], "shared-memory segments survived the run"

    def _left(self):
        return sorted(s for s in self.segments if os.path.exists(f"/dev/shm/{s}"))


def test_an_interrupt_stops_every_worker(micro):
    _, graph, x_seq = micro
    watch = _Watch()

    def interrupt(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_local_workers(ArtifactFiles.of_graph(graph), array_inputs(x_seq), x_seq.shape[1],
                          workers=2, chunk=1, on_samples=interrupt)
    watch.assert_gone()


def test_a_worker_that_raises_is_named_and_the_others_stopped(micro):
    _, graph, x_seq = micro
    watch = _Watch()

    def inputs(start, stop):      # one sample too many in the second worker's last chunk
        return x_seq[:, start:stop + (start == 4)]

    with pytest.raises(WorkerFailed) as failed:
        run_local_workers(ArtifactFiles.of_graph(graph), inputs, x_seq.shape[1], workers=2,
                          chunk=1, sample_ids=range(10, 16))
    assert str(failed.value) == ("worker 1 (samples 13..15) raised ValueError: inputs for "
                                 "positions 4..4 hold 2 samples; the other workers were "
                                 "stopped")
    assert "Traceback" in failed.value.details
    watch.assert_gone()


def test_a_worker_refuses_an_artifact_changed_on_the_way(micro):
    _, graph, x_seq = micro
    art = ArtifactFiles.of_graph(graph)
    art.files[TENSOR_FILE] = art.files[TENSOR_FILE][:-1] + b"\0"
    with pytest.raises(WorkerFailed, match=r"worker (0 \(samples 0\.\.2|1 \(samples 3\.\.5)\) "
                                           r"raised IntegrityError: .*tensors\.bin does not "
                                           r"match"):
        run_local_workers(art, array_inputs(x_seq), x_seq.shape[1], workers=2)


# -- Ray ----------------------------------------------------------------------------------------
def test_cluster_addresses():
    assert parse_cluster("ray").local
    assert parse_cluster("ray:auto").address == "auto"
    assert parse_cluster("ray://head:10001").address == "ray://head:10001"
    with pytest.raises(ValueError, match="'ray://HOST:PORT'"):
        parse_cluster("dask")


def test_ray_tasks_equal_one_process_and_check_the_artifact(micro, one_process):
    """One local Ray instance for both runs (two CPUs, no dashboard): the tasks' results equal
    one process's; a task given changed artifact bytes refuses them, naming its samples."""
    ray = require_ray()
    _, graph, x_seq = micro
    probes, base = one_process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cluster = parse_cluster("ray")
        res = run_on_ray(ArtifactFiles.of_graph(graph), array_inputs(x_seq), x_seq.shape[1],
                         cluster=cluster, tasks=2, chunk=2, probes=probes)
        _assert_same(res, base)
        assert [w.shard.index for w in res.workers] == [0, 1]
        art = ArtifactFiles.of_graph(graph)
        art.files[GRAPH_FILE] = art.files[GRAPH_FILE].replace(b'"version"', b'"versioN"')
        with pytest.raises(WorkerFailed, match=r"Ray task \d \(samples \d\.\.\d\) raised "
                                               r"IntegrityError: .*graph\.json does not"):
            run_on_ray(art, array_inputs(x_seq), x_seq.shape[1], cluster=cluster, tasks=2)
        assert ray.is_initialized()      # the caller's session is left to the caller
    finally:
        ray.shutdown()
