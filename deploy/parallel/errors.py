"""How a parallel run ends when one of its workers does not finish."""
from __future__ import annotations

import signal
from typing import Optional

from deploy.parallel.shards import Shard


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class WorkerFailed(RuntimeError):
    """A worker (a local process or a Ray task) raised or died; the others were stopped.
    The message names the worker and its samples; ``details`` holds its traceback or the
    end of its output, where there is one."""

    def __init__(self, shard: Shard, what: str, details: str = "", kind: str = "worker"):
        self.shard, self.what, self.details, self.kind = shard, what, details, kind
        super().__init__(f"{shard.describe(kind)} {what}; the other {kind}s were stopped")


class WorkerInterrupted(KeyboardInterrupt):
    """A worker was stopped by SIGINT, SIGTERM or SIGHUP sent to it rather than to this
    process: the run is interrupted as if this process had received it (``signum``, as
    ``spikeform_cli.exit_codes`` reads it: exit 128 + signum)."""

    def __init__(self, signum: int, shard: Optional[Shard] = None):
        super().__init__(signum)
        self.signum, self.shard = signum, shard
