"""What the numbers were measured on: CPU, memory, library versions, thread settings, load."""
from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 ** 2
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, object]:
    """Measured in the parent; the children inherit its environment (thread variables)."""
    import torch  # the version and the thread count torch picks under this environment

    info: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": _ram_gb(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "lava": _version("lava-nc"),
        "env_threads": {k: os.environ.get(k) for k in THREAD_VARS},
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "loadavg_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [f"{p.get('internal_api')} {p.get('version') or ''} "
                        f"({p.get('num_threads')} threads)".replace("  ", " ")
                        for p in threadpool_info()]
    except Exception:  # noqa: BLE001 - informative only
        info["blas"] = ["threadpoolctl unavailable"]
    return info


def describe(m: dict[str, object]) -> list[str]:
    ram = f"{m['ram_gb']:.1f} GB RAM" if m.get("ram_gb") else "RAM unknown"
    load = m.get("loadavg_1m_at_start")
    env = ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in m["env_threads"].items())
    return [
        f"machine: {m['cpu']}; {m['cpu_count']} cores ({m['cpus_usable']} usable); {ram}; "
        f"load avg (1 min) at start {load if load is None else f'{load:.2f}'}; nice {m['nice']}",
        f"software: Python {m['python']}, numpy {m['numpy']}, torch {m['torch']} "
        f"({m['torch_threads']} threads), lava-nc {m['lava']}",
        f"threads: {env}; BLAS: {'; '.join(m['blas'])}",
    ]
