"""The benchmark suite (benchmarks/): its smallest mode end to end, and the pieces whose
mistakes would silently corrupt the numbers (per-measurement peak memory, the growth fit)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.paths import ROOT
sys.path.insert(0, str(ROOT))  # benchmarks/ is not an installed package

from benchmarks import markdown, scaling  # noqa: E402
from benchmarks.isolate import MeasurementError, run_isolated  # noqa: E402
from benchmarks.suite import PARTS, main, parse_parts  # noqa: E402

THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


@pytest.mark.lava
@pytest.mark.slow  # about a minute on an idle 2-core machine: 12 processes, each importing Lava
def test_quick_suite_end_to_end(tmp_path):
    """`python -m benchmarks.suite --quick`: every part measured in its own process, the table
    printed, JSON and plot written, Lava equal to the reference executor."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.suite", "--quick", "--threads", "1",
                           "--only", "all", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **THREADS})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for text in ("machine:", "lava-nc 0.10.0", "OMP_NUM_THREADS=1", "ref/float",
                 "EXTRAPOLATED", "growth exponent", "train samples/s"):
        assert text in out, f"{text!r} missing from the table:\n{out}"

    res = json.loads((tmp_path / "suite-quick.json").read_text())
    assert res["mode"] == "quick" and res["failures"] == []
    assert res["machine"]["env_threads"]["OMP_NUM_THREADS"] == "1"

    tp = res["throughput"]
    assert sorted((r["engine"], r["batch"]) for r in tp) == [
        ("float", 1), ("float", 8), ("reference", 1), ("reference", 8)]
    assert all(r["samples_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in tp)
    assert all(r["torch_threads"] == 1 for r in tp)

    assert [r["config"] for r in res["compile"]] == ["test-micro", "digits-tiny"]
    assert all(r["compile_s"] > 0 and r["nodes"] == 33 for r in res["compile"])

    (lava,) = res["lava"]
    fid = lava["accelerated_fidelity"]
    assert lava["exact"] and fid["spike_mismatches"] == 0 and fid["logit_mismatches"] == 0
    assert fid["spikes_compared"] > 0
    stock = lava["stock"]
    assert stock["timing"]["extrapolated"] and stock["timing"]["steps"] == 2
    assert stock["fidelity"]["spike_mismatches"] == 0 and stock["fidelity"]["values_compared"] > 0
    assert lava["accelerated"]["per_sample_s"] > 0 and lava["peak_rss_mb"] > 0
    for key in ("floor", "floor_chain"):   # the empty networks: as many processes and steps
        floor = lava[key]
        assert floor["processes"] == lava["processes"]
        assert floor["steps"] == lava["accelerated"]["steps"]
        assert len(floor["runs_ms_per_step"]) == 3 and floor["ms_per_step"] > 0
    assert lava["floor"]["channels"] >= lava["processes"] - 1
    assert lava["accel_over_floor"] == (lava["accelerated"]["ms_per_step"]
                                        / lava["floor"]["ms_per_step"])
    res_workers = res["workers"]
    assert [r["workers"] for r in res_workers] == [1, 2]
    assert all(r["logits_equal"] for r in res_workers)

    sc = res["scaling"]
    assert len(sc["points"]) == 3                      # the base point is shared by both axes
    assert all(p["logits_equal"] for p in sc["points"])
    assert sorted(p["tokens"] for p in sc["points"]) == [4, 4, 16]
    assert set(sc["exponents"]) == {"tokens", "depth"}
    assert (tmp_path / "scaling-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["config"] for r in res["training"]] == ["test-micro"]

    md = markdown.render(res)                          # the README's tables, from this JSON
    for text in ("| float samples/s |", "| digits-tiny (checkpoint, digits test) | 8 |",
                 "| test-micro | 0.01 M | 16 |", "extrapolated from 2 steps",
                 f"0 of {fid['spikes_compared']:,} spikes, 0 of 2 logit vectors",
                 "| tokens | 4 → 16 |"):
        assert text in md, f"{text!r} missing from the Markdown:\n{md}"


def _helper_module(tmp_path):
    (tmp_path / "bench_helper_mod.py").write_text(
        "import subprocess, time\n"
        "def hold(mb):\n"
        "    block = b'x' * (mb * 2 ** 20)  # written, so resident\n"
        "    return {'held': len(block)}\n"
        "def fail():\n"
        "    raise RuntimeError('deliberate failure')\n"
        "def hang(pid_file):\n"
        "    p = subprocess.Popen(['sleep', '120'])\n"
        "    open(pid_file, 'w').write(str(p.pid))\n"
        "    time.sleep(120)\n")
    return {"PYTHONPATH": str(tmp_path)}


def test_peak_rss_is_each_measurements_own(tmp_path):
    env = _helper_module(tmp_path)
    big = run_isolated("bench_helper_mod:hold", {"mb": 300}, 60, env)
    small = run_isolated("bench_helper_mod:hold", {"mb": 0}, 60, env)
    assert big["held"] == 300 * 2 ** 20 and small["held"] == 0
    assert big["peak_rss_mb"] >= 300
    assert small["peak_rss_mb"] < 100, "the previous measurement's peak leaked into this one"


def test_failed_and_hung_measurements_are_reported_and_cleaned_up(tmp_path):
    env = _helper_module(tmp_path)
    with pytest.raises(MeasurementError, match=r"bench_helper_mod:fail\(\) failed with exit"):
        run_isolated("bench_helper_mod:fail", {}, 60, env)
    pid_file = tmp_path / "pid"
    with pytest.raises(MeasurementError, match="time limit"):
        run_isolated("bench_helper_mod:hang", {"pid_file": str(pid_file)}, 4, env)
    grandchild = int(pid_file.read_text())
    deadline = time.time() + 10
    while time.time() < deadline and _alive(grandchild):
        time.sleep(0.1)
    assert not _alive(grandchild), "the measurement's own child process survived the timeout"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_growth_exponent_fit():
    x = [1, 2, 4, 8, 16]
    assert scaling.growth_exponent(x, [3.0 * v ** 2 for v in x]) == pytest.approx(2.0, abs=1e-12)
    assert scaling.growth_exponent([2, 8], [5.0, 5.0]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="two or more positive points"):
        scaling.growth_exponent([4], [1.0])
    with pytest.raises(ValueError, match="positive"):
        scaling.growth_exponent([1, 2], [0.0, 1.0])


def test_full_scaling_plan_shares_the_base_point():
    pts = scaling.points(scaling.FULL)
    assert len(pts) == 10                             # 3 axes x 4 values, base counted once
    base = [p for p in pts if len(p["axes"]) == 3]
    assert [b["axes"] for b in base] == [{"tokens": 64, "dim": 64, "depth": 1}]
    from spikformer_neuro.config import SpikformerConfig
    for p in pts:                                     # the axis value is what the config gives
        cfg = SpikformerConfig.from_dict(p["config"])
        assert p["axes"].get("tokens", cfg.num_tokens) == cfg.num_tokens
        assert p["axes"].get("dim", cfg.embed_dim) == cfg.embed_dim
        assert p["axes"].get("depth", cfg.depth) == cfg.depth


def test_parts_selection(capsys):
    assert parse_parts("lava,compile") == ["compile", "lava"]    # suite order
    assert parse_parts("all") == list(PARTS)
    with pytest.raises(SystemExit) as exc:
        main(["--only", "compile,bogus"])
    assert exc.value.code == 2
    assert "unknown part(s) bogus" in capsys.readouterr().err


@pytest.mark.lava
def test_lava_profile_accounts_for_every_process_and_changes_no_result(capsys):
    """benchmarks/lava_profile.py: every Lava process of the run (and of its wired floor)
    reports its CPU for every step, the parts add up, and the instrumented run's logits still
    equal the reference executor's."""
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    from benchmarks import lava_profile
    from benchmarks.workloads import load_workload
    from deploy.lava import lower

    spike = PyLoihiProcessModel._spike
    out = lava_profile.profile_checkpoint("test-micro", 2)
    assert PyLoihiProcessModel._spike is spike   # no wrapper left in later runs' steps
    assert out["logits_equal_reference"]
    processes = len(lower(load_workload("test-micro", 2).graph).stages)
    for key in ("lava_sim", "wired_floor"):
        kinds = out[key]["kinds"]
        assert sum(k["processes"] for k in kinds.values()) == processes, key
        for name, k in kinds.items():
            assert k["cpu_ms"] >= k["step_ms"] > 0, (key, name)
            assert k["step_ms"] == pytest.approx(k["ports_ms"] + k["model_ms"]), (key, name)
    assert set(out["wired_floor"]["kinds"]) == {"PyMirrorModel"}
    assert "PyConvModelFixedAccelerated" in out["lava_sim"]["kinds"]
    text = lava_profile.table("lava-sim", out["lava_sim"]["ms_per_step"],
                              out["lava_sim"]["kinds"])
    assert "total" in text and "PyConvModelFixedAccelerated" in text
