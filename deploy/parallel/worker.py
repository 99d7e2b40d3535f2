"""A local worker process: ``python -m deploy.parallel.worker FD PARENT_PID LABEL``
(started by :mod:`deploy.parallel.local`, never by hand; LABEL names its shard for ``ps``).

A fresh interpreter, not a fork: the parent has imported Lava (which fixes multiprocessing's
start method to ``fork`` at import) and often torch, and runs threads (OpenMP, tqdm); a forked
copy would inherit their held locks and Lava's global state. Here Lava is imported anew and
forks its own workers from a single-threaded process, as it does in spikeform-run itself.

The worker dies with its parent (``deploy.lava.runtime.die_with_parent``; its Lava workers
die with it in turn), runs in a session of its own (a terminal's Ctrl-C or ``kill`` of the
command's process group reaches the parent only, which then stops the workers), and stops on
SIGINT from the parent: ``KeyboardInterrupt`` stops its Lava runtime (``deploy.lava.run``
always does) and it exits with status 130, quietly.

Messages on the connection ``FD`` (pickled, ``multiprocessing.connection``):
  parent -> worker: ("start", spec), then ("chunk", start, stop, packed inputs) ..., ("done",)
  worker -> parent: ("ready", startup seconds), ("result", ChunkResult) per chunk, or
                    ("error", "Type: message", traceback) before it exits with status 1
"""
from __future__ import annotations

import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import List


def serve(conn: Connection, parent: int) -> int:
    started = time.perf_counter()
    kind, spec = conn.recv()
    if kind != "start":
        raise RuntimeError(f"expected the start message, got {kind!r}")
    from deploy.lava.runtime import die_with_parent   # imports Lava

    die_with_parent(parent)
    from deploy.lava import lower
    from deploy.parallel.execute import run_chunk
    from deploy.parallel.results import unpack

    network = lower(spec["artifact"].graph(spec["manifest_sha256"]))
    conn.send(("ready", time.perf_counter() - started))
    while True:
        message = conn.recv()
        if message[0] == "done":
            return 0
        _, start, stop, packed = message
        conn.send(("result", run_chunk(network, start, stop, unpack(packed),
                                       target=spec["target"], probes=spec["probes"])))


def main(argv: List[str]) -> int:
    conn = Connection(int(argv[0]))
    try:
        return serve(conn, int(argv[1]))
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except EOFError:          # the parent closed the connection: it is gone or stopping us
        return 1
    except Exception as e:  # noqa: BLE001 - reported to the parent, which names this worker
        try:
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
        except (OSError, EOFError):
            pass
        return 1
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
