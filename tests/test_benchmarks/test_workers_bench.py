"""benchmarks/workers.py: the 1 -> N workers measurement behind `make bench`'s scaling of
spikeform-run, on a few samples: it runs the real workers and checks them against the
reference executor."""
import sys

import pytest

from support.paths import ROOT
sys.path.insert(0, str(ROOT))  # benchmarks/ is not an installed package

from benchmarks import workers  # noqa: E402


@pytest.mark.lava
def test_measure_two_workers_equal_to_the_reference():
    row = workers.measure(workers=2, samples=4, chunk=2)
    assert row["workers"] == 2 and row["samples"] == 4 and row["logits_equal"]
    assert row["samples_per_s_wall"] == pytest.approx(4 / row["wall_s"])
    assert row["samples_per_s_stepping"] > row["samples_per_s_wall"] > 0
    assert row["worker_startup_s"] > 0 and row["ms_per_step"] > 0
    base = dict(row, workers=1, samples_per_s_wall=row["samples_per_s_wall"] / 2)
    table = workers.render([base, row])
    assert table[0].split()[:3] == ["workers", "wall", "s"]
    assert table[2].split()[3] == "2.00x" and table[2].endswith("yes")
