"""What the command-line tools share (spikeform-compile, -run, -report; -train for errors).

- targets: the names ``--target`` accepts (:data:`TARGETS`; ``spikeform-run`` takes
  :data:`LAVA_TARGETS`), :func:`check_target`, :func:`require_lava` (loihi2 needs lava-loihi)
- errors: :class:`CliError` (bad arguments or inputs: exit 2 with one paragraph) and
  :func:`render_error`, which names a command-line flag where a library error names the
  parameter it concerns (``OptionError.option``, ``DatasetError.option``)
- outputs: :class:`OutputDir` (a directory replaced wholesale: refused unless empty or an
  earlier output of the same kind, built in a temporary sibling and swapped in atomically),
  :func:`check_writable`, :func:`check_report_file`, :func:`write_json`
- data: the data set of a source or of a compiled graph (:func:`source_dataset`,
  :func:`graph_dataset`), :func:`stack_samples`, :func:`first_samples`,
  :func:`labelled_batches`, and :func:`compile_source` (calibrate on the training split, then
  compile)
- :class:`Progress`: tqdm bars, none with ``-q``/``--json``

Heavy imports (torch, the model code, Lava) happen inside the functions that need them, so
that ``spikeform-run --input x.npy`` never loads PyTorch.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from compiler.serialize import make_build_dir, replace_directory_atomic, write_atomic

# -- targets ----------------------------------------------------------------------------------

#: Lava's fixed-point targets (deploy.lava.TARGETS): quantized graphs and compiled artifacts
LAVA_TARGETS = ("lava-sim", "lava-sim-stock", "loihi2")
#: the float graph on Lava's floating-point models (deploy.lava.FLOAT_TARGET)
FLOAT_LAVA_TARGET = "lava-sim-float"
REFERENCE_TARGET = "reference"   # the integer reference executor only, no Lava
NIR_TARGET = "nir"               # export a NIR file instead of compiling
LOIHI2_TARGET = "loihi2"
#: every target, in the order the help lists them; spikeform-run takes LAVA_TARGETS
TARGETS = LAVA_TARGETS + (FLOAT_LAVA_TARGET, REFERENCE_TARGET, NIR_TARGET)


class CliError(Exception):
    """Bad arguments or inputs: reported as one paragraph with exit code 2."""


def check_target(target: str, choices: Sequence[str] = TARGETS) -> None:
    if target not in choices:
        raise CliError(f"unknown target '{target}'; choose one of: {', '.join(choices)}")


def require_lava(target: str) -> None:
    """Import the Lava backend (it is slow to import: only for a Lava target) and refuse
    loihi2 where Intel's extension is missing."""
    from deploy.lava import loihi_extension_available

    if target == LOIHI2_TARGET and not loihi_extension_available():
        raise CliError("target loihi2 needs Intel's lava-loihi extension (available to INRC "
                       "members), which is not installed; --target lava-sim runs the same "
                       "processes with Lava's bit-accurate fixed-point models")


# -- library errors ---------------------------------------------------------------------------

def option_flag(option: str, flags: Optional[Mapping[str, str]] = None) -> str:
    """The command-line flag of a library parameter: ``time_steps`` -> ``--time-steps``, unless
    the command calls it otherwise (``flags``: parameter -> flag)."""
    if flags and option in flags:
        return flags[option]
    return "--" + option.replace("_", "-")


def render_error(exc: BaseException, flags: Optional[Mapping[str, str]] = None) -> str:
    """The message of ``exc`` for a command line. A library error whose ``option`` attribute
    names the parameter it concerns (``compiler.ir.OptionError``,
    ``spikformer_neuro.data.DatasetError``) names the flag instead (:func:`option_flag`):
    every mention of the parameter becomes its flag (``pass time_steps`` -> ``pass
    --time-steps``), and a message that does not mention it gets the flag at its end. A
    message that already quotes the flag is left as it is."""
    message = str(exc)
    option = getattr(exc, "option", None)
    if not option:
        return message
    flag = option_flag(option, flags)
    if flag in message:
        return message
    # the parameter as a word of its own, not part of a path (data_dir/train/<class>)
    mention = re.compile(rf"(?<![\w./-]){re.escape(option)}(?![\w/-])")
    rendered, count = mention.subn(lambda _: flag, message)
    return rendered if count else f"{message} ({flag})"


# -- outputs ----------------------------------------------------------------------------------

def check_writable(path: Path) -> None:
    """No existing ancestor of ``path`` is a file (it could not be created)."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CliError(f"cannot write {path}: {parent} is not a directory")


def check_report_file(report: Optional[Path], flag: str = "--report") -> None:
    """An optional JSON output file: not a directory, and creatable."""
    if report is None:
        return
    if report.is_dir():
        raise CliError(f"{flag} {report} is a directory; give a file path")
    check_writable(report)


def json_bytes(obj, *, sort_keys: bool = True) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n").encode()


def write_json(path: Path, obj, *, sort_keys: bool = True) -> None:
    """``obj`` as indented JSON (sorted keys unless told), written atomically."""
    write_atomic(path, json_bytes(obj, sort_keys=sort_keys))


@dataclass(frozen=True)
class OutputDir:
    """A directory a command writes as a whole (an artifact, a report directory).

    It replaces ``path`` wholesale, so only an empty directory or an earlier output of the
    same kind (``is_earlier``) may be there: anything else would be deleted, and is refused
    before any work (:meth:`check`) and again at the swap (:meth:`build`)."""

    path: Path
    kind: str                             # "a compiled artifact (no graph.json)", for messages
    is_earlier: Callable[[Path], bool]

    def check(self) -> None:
        out = self.path
        if out.exists():
            if not out.is_dir():
                raise CliError(f"output {out} exists and is not a directory; choose another "
                               "-o/--output")
            if any(out.iterdir()) and not self.is_earlier(out):
                raise CliError(f"output directory {out} is not empty and is not {self.kind}; "
                               "it would be replaced and its contents deleted: choose another "
                               "-o/--output")
        check_writable(out)

    @contextmanager
    def build(self) -> Iterator[Path]:
        """An empty sibling directory to write into; when the block completes it replaces
        ``path`` atomically, and when it fails it is removed and ``path`` is untouched."""
        build = make_build_dir(self.path)
        try:
            yield build
            replace_directory_atomic(build, self.path, replaceable=self.is_earlier)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise


# -- data -------------------------------------------------------------------------------------

def source_dataset(src, split: str, data_dir: Optional[str]):
    """The ``split`` of a :class:`compiler.pipeline.Source`'s data set, at its image size and
    time steps."""
    from spikformer_neuro.data import load_dataset

    dataset, _ = load_dataset(src.dataset, split, data_dir, img_size=src.img_size,
                              time_steps=src.time_steps)
    return dataset


def graph_dataset(graph, split: str, data_dir: Optional[str], *, missing: str):
    """The ``split`` of the data set a compiled graph names (its meta), at the graph's own
    image size and time steps (artifacts compiled from NIR files carry no model config).
    ``missing``: the message when the graph names none. Data set errors become
    :class:`CliError`, so that callers need not import the data code to catch them."""
    dataset = graph.meta.get("dataset")
    if not dataset:
        raise CliError(missing)
    from spikformer_neuro.data import DatasetError, load_dataset

    try:
        ds, _ = load_dataset(dataset, split, data_dir, img_size=int(graph.input_node.shape[1]),
                             time_steps=graph.time_steps)
    except DatasetError as e:
        raise CliError(render_error(e)) from None
    return ds


def stack_samples(dataset, n: int):
    """The first ``n`` samples as (a stacked tensor, labels as int64 numpy)."""
    import torch

    n = min(n, len(dataset))
    xs, ys = zip(*(dataset[i] for i in range(n))) if n else ((), ())
    return (torch.stack(xs) if xs else torch.empty(0)), np.asarray(ys, dtype=np.int64)


def first_samples(dataset, n: Optional[int]):
    """The first ``n`` samples (all for None), as a dataset."""
    if n is None:
        return dataset
    from torch.utils.data import Subset

    return Subset(dataset, range(min(n, len(dataset))))


def labelled_batches(dataset, batch_size: int) -> Tuple[int, Iterator]:
    """(number of batches, ``(x, labels as numpy)`` batches in order)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size)
    return len(loader), ((x, np.asarray(y)) for x, y in loader)


def compile_source(src, *, data_dir: Optional[str], calibration_samples: int, overflow: str,
                   margin: float, progress: Callable[[Iterable], Iterable] = lambda it: it):
    """(``compiler.pipeline.Compiled``, calibration samples used): ``src`` compiled as
    spikeform-compile does, calibrated on the first samples of its training split."""
    from compiler.pipeline import compile_graph  # imports the model code

    calib, _ = stack_samples(source_dataset(src, "train", data_dir), calibration_samples)
    return compile_graph(src.graph, calib, overflow, margin, progress), len(calib)


# -- progress ---------------------------------------------------------------------------------

class Progress:
    """The command's progress bars on stderr; none when ``show`` is false (-q, --json)."""

    def __init__(self, show: bool):
        self.show = show
        # tqdm's default lock is a multiprocessing RLock, and creating it fixes the process's
        # multiprocessing start method; Lava's import then fails ("context has already been
        # set") when a later command in the same process runs Lava. These bars live in one
        # process: a thread lock is all they need.
        if getattr(tqdm, "_lock", None) is None:
            tqdm.set_lock(threading.RLock())

    def over(self, desc: str, total: Optional[int] = None) -> Callable[[Iterable], Iterable]:
        """A ``progress(iterable)`` wrapper (what the compiler's functions take)."""
        return lambda it: tqdm(it, total=total, desc=desc, disable=not self.show, leave=False)

    @contextmanager
    def steps(self, desc: str) -> Iterator[Callable[[int, int], None]]:
        """A ``progress(done, total)`` callback (what the Lava runs take), for one block."""
        with tqdm(desc=desc, unit="step", disable=not self.show, leave=False) as bar:
            def update(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            yield update

    def bar(self, total: int, desc: str, unit: str) -> tqdm:
        """A bar that stays on screen, advanced by hand (``bar.update(n)``)."""
        return tqdm(total=total, desc=desc, unit=unit, disable=not self.show)
