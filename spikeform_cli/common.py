"""What the command-line tools share (spikeform-compile, -run, -report; -train for errors).

- targets: the names ``--target`` accepts (:data:`TARGETS`; ``spikeform-run`` takes
  :data:`LAVA_TARGETS`), :func:`check_target`, :func:`require_lava` (loihi2 needs lava-loihi)
- errors: :class:`CliError` (bad arguments or inputs: exit 2 with one paragraph) and
  :func:`render_error`, which names a command-line flag where a library error names the
  parameter it concerns (``OptionError.option``, ``DatasetError.option``)
- outputs, checked before any long work and never lost at the end: :class:`OutputDir` (a
  directory replaced wholesale: refused unless empty or an earlier output of the same kind
  holding only files the command writes, built in a temporary sibling and swapped in
  atomically; :meth:`OutputDir.write` falls back to a new directory in $TMPDIR when the swap
  fails), :func:`check_writable` (tried with a real file, not guessed from permission bits),
  :func:`check_output_file`, :func:`check_report_file`, :func:`write_json`,
  :func:`write_or_fallback` (a file that cannot be written goes to $TMPDIR instead, and the
  command says where and exits 2), :func:`same_file`
- data: :class:`Samples` (samples and where they came from, for report.json's "data"); the
  data set of a source or of a compiled graph as its network takes it (:func:`graph_samples`,
  :func:`source_dataset`, :func:`graph_dataset`: images flattened row-major for a network
  whose input is a vector); the user's .npy files (:func:`load_npy`, :func:`load_samples`,
  :func:`load_labels`, :func:`file_samples`; checked by ``compiler.encoding.check_samples``,
  the one check spikeform-compile, -report and -run share); :func:`check_data_flags` and
  :func:`choose_samples` (--data / --labels / --calibration-data, or the data set's splits);
  :func:`stack_samples`, :func:`first_samples`, :func:`labelled_batches`, and
  :func:`compile_source` (calibrate, then compile)
- :class:`Progress`: tqdm bars, none with ``-q``/``--json``

Heavy imports (torch, the model code, Lava) happen inside the functions that need them, so
that ``spikeform-run --input x.npy`` never loads PyTorch.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import (Callable, Collection, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

import numpy as np
from tqdm import tqdm

from compiler.serialize import (foreign_entries, make_build_dir, replace_directory_atomic,
                                write_atomic)

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

_WRITE_TEST = ".spikeform-write-test-"


def _write_test(directory: Path) -> Optional[str]:
    """None when this process can create a file in ``directory``, else why not. Tried with a
    real (hidden, removed at once) file: permission bits do not tell a read-only file system,
    an ACL or a kernel file system (/sys) apart, and root passes every access() check."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=_WRITE_TEST)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(tmp)
    return None


def _existing_ancestor(path: Path) -> Path:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_writable(path: Path, flag: Optional[str] = None) -> None:
    """``path`` can be created: its nearest existing ancestor is a directory in which this
    process can create files (missing directories in between are created on writing)."""
    parent = _existing_ancestor(path)
    what = f"{flag} {path}" if flag else str(path)
    if not parent.is_dir():
        raise CliError(f"cannot write {what}: {parent} is not a directory")
    reason = _write_test(parent)
    if reason:
        raise CliError(f"cannot write {what}: cannot create files in {parent} ({reason}); "
                       f"choose another location{' with ' + flag if flag else ''}")


def check_output_file(path: Optional[Path], flag: str) -> None:
    """An optional output file, before any work: not a directory, and creatable."""
    if path is None:
        return
    if path.is_dir():
        raise CliError(f"{flag} {path} is a directory; give a file path")
    check_writable(path, flag)


def check_report_file(report: Optional[Path], flag: str = "--report") -> None:
    """An optional JSON output file: not a directory, and creatable."""
    check_output_file(report, flag)


def same_file(a: Optional[Path], b: Optional[Path]) -> bool:
    """Whether two paths name the same file (existing or not)."""
    if a is None or b is None:
        return False
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def inside(path: Optional[Path], directory: Path) -> bool:
    """Whether ``path`` lies inside ``directory`` (or is it)."""
    if path is None:
        return False
    path, directory = path.resolve(), directory.resolve()
    return path == directory or directory in path.parents


def json_bytes(obj, *, sort_keys: bool = True) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n").encode()


def write_json(path: Path, obj, *, sort_keys: bool = True) -> None:
    """``obj`` as indented JSON (sorted keys unless told), written atomically."""
    write_atomic(path, json_bytes(obj, sort_keys=sort_keys))


def _reason(e: OSError) -> str:
    return e.strerror if (e.strerror and not isinstance(e, FileExistsError)) else str(e)


def _fallback_dirs() -> List[Path]:
    return [Path(tempfile.gettempdir()), Path.cwd()]


def write_or_fallback(path: Path, data: bytes, what: str) -> Optional[str]:
    """Write ``data`` to ``path`` atomically and return None; when that fails (a disk that
    filled up, a permission changed during a long run), write it to a new file named like
    ``path`` in $TMPDIR (else the current directory) and return one sentence saying where
    it could not go and where it went. The caller reports it and exits 2."""
    try:
        write_atomic(path, data)
        return None
    except OSError as e:
        reason = _reason(e)
    for directory in _fallback_dirs():
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{path.stem}.",
                                       suffix=path.suffix)
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return (f"could not write {what} to {path} ({reason}); it was written to {tmp} "
                    "instead")
        except OSError:
            Path(tmp).unlink(missing_ok=True)
    return (f"could not write {what} to {path} ({reason}), nor to a new file in "
            f"{' or '.join(map(str, _fallback_dirs()))}")


@dataclass(frozen=True)
class OutputDir:
    """A directory a command writes as a whole (an artifact, a report directory).

    It replaces ``path`` wholesale, so only an empty directory or an earlier output of the
    same kind (``is_earlier``) that holds nothing but files the command writes
    (``files(path)``) may be there: anything else would be deleted, and is refused, naming
    it, before any work (:meth:`check`) and again at the swap (:meth:`build`)."""

    path: Path
    kind: str                             # "a compiled artifact (no graph.json)", for messages
    is_earlier: Callable[[Path], bool]
    files: Callable[[Path], Collection[str]]   # names an earlier output may hold
    writer: str = "this command"          # "spikeform-compile", for messages
    flag: str = "-o/--output"

    def owned(self, path: Path) -> Optional[Collection[str]]:
        """The files of ``path`` this command wrote, or None when it is no earlier output
        (a write test left behind by a killed run counts as the command's own)."""
        if not self.is_earlier(path):
            return None
        leftovers = {p.name for p in path.glob(_WRITE_TEST + "*")}
        return set(self.files(path)) | leftovers

    def check(self) -> None:
        out = self.path
        if out.is_symlink():
            raise CliError(f"output {out} is a symbolic link; replacing it with a directory "
                           f"would delete the link: give the directory it points to, or "
                           f"choose another {self.flag}")
        if out.exists():
            if not out.is_dir():
                raise CliError(f"output {out} exists and is not a directory; choose another "
                               f"{self.flag}")
            if any(out.iterdir()) and not self.is_earlier(out):
                raise CliError(f"output directory {out} is not empty and is not {self.kind}; "
                               "it would be replaced and its contents deleted: choose another "
                               f"{self.flag}")
            foreign = foreign_entries(out, self.owned)
            if foreign:
                names = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more"
                                                  if len(foreign) > 8 else "")
                raise CliError(f"output directory {out} holds {names}, which {self.writer} "
                               "did not write; replacing the directory would delete "
                               f"{'them' if len(foreign) > 1 else 'it'}: move "
                               f"{'them' if len(foreign) > 1 else 'it'} out of {out}, or "
                               f"choose another {self.flag}")
            reason = _write_test(out)   # its old files are removed after the swap
            if reason:
                raise CliError(f"cannot replace output directory {out}: cannot write in it "
                               f"({reason}); choose another {self.flag}")
        check_writable(out, self.flag)

    @contextmanager
    def build(self) -> Iterator[Path]:
        """An empty sibling directory to write into; when the block completes it replaces
        ``path`` atomically, and when it fails it is removed and ``path`` is untouched."""
        build = make_build_dir(self.path)
        try:
            yield build
            replace_directory_atomic(build, self.path, owned=self.owned)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise

    def write(self, fill: Callable[[Path], None], what: str) -> Optional[str]:
        """``fill(directory)`` into a build directory swapped in for ``path``; None when
        done. When writing or the swap fails, the output is written whole into a new
        directory in $TMPDIR (else the current directory) instead, and one sentence says
        where it could not go and where it went (the caller reports it and exits 2)."""
        try:
            with self.build() as build:
                fill(build)
            return None
        except OSError as e:
            reason = _reason(e)
        for directory in _fallback_dirs():
            try:
                fallback = Path(tempfile.mkdtemp(dir=directory, prefix=f"{self.path.name}."))
            except OSError:
                continue
            try:
                fill(fallback)
                return (f"could not write {what} to {self.path} ({reason}); it was written "
                        f"to {fallback} instead")
            except OSError:
                shutil.rmtree(fallback, ignore_errors=True)
        return (f"could not write {what} to {self.path} ({reason}), nor to a new directory "
                f"in {' or '.join(map(str, _fallback_dirs()))}")


# -- data -------------------------------------------------------------------------------------
# Samples come from a registered data set (the one a checkpoint or graph names, or --dataset)
# or from the user's .npy files (--data / --labels / --calibration-data of spikeform-compile
# and -report, --input / --labels of spikeform-run); both are checked against the network's
# input by compiler.encoding (one implementation: the shape users give, real finite numbers,
# [0, 1] or binary spikes), and both say where they came from (:attr:`Samples.record`, the
# report's "data" key).

@dataclass
class Samples:
    """Samples for calibration or verification and where they came from."""

    dataset: object           # a torch Dataset of (x, label) items
    record: dict              # report.json "data": source, path or data set, samples, ...

    def first(self, n: Optional[int]) -> "Samples":
        """The first ``n`` samples (all for None), with the count recorded."""
        ds = first_samples(self.dataset, n)
        return Samples(ds, {**self.record, "samples": len(ds)})

    def describe(self) -> str:
        return describe_samples(self.record)


def describe_samples(record: Optional[dict]) -> str:
    """One line for a command's summary from a :attr:`Samples.record`, e.g. ``32 samples of
    digits (test split), [1, 8, 8] samples flattened row-major to [64]``."""
    r = record
    if not r:
        return "none"
    if r["source"] == "dataset":
        text = f"{r.get('samples', '?')} samples of {r['dataset']} ({r['split']} split)"
    else:
        text = f"{r.get('samples', '?')} samples of {r['source']} {r['path']}"
    if r.get("labels"):
        text += f", labels {r['labels']}"
    elif r["source"] != "dataset" and "labels" in r:
        text += ", no labels (accuracy not measured)"
    if r.get("reshaped_from"):
        text += (f", {_dims(r['reshaped_from'])} samples flattened row-major to "
                 f"{_dims(r['shape'])}")
    if r.get("note"):
        text += f" ({r['note']})"
    return text


def _dims(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _want(graph) -> Tuple[Tuple[int, ...], bool, int]:
    """(one item's shape as the network takes it: ``[T, *sample]`` for spike input, whether
    the input is a vector held as the map (K, 1, 1), the number of leading time axes)."""
    from compiler.encoding import is_flat, sample_shape, takes_sequences

    timed = takes_sequences(graph)
    sample = sample_shape(graph)
    return ((graph.time_steps,) if timed else ()) + sample, is_flat(graph), int(timed)


def graph_samples(graph, name: str, split: str, data_dir: Optional[str], *,
                  flag: str = "--data") -> Samples:
    """The ``split`` of the registered data set ``name`` as ``graph`` takes it: at the
    graph's own image size and time steps; for a network whose input is a vector ``[K]``,
    images (or event frames) of K values flattened row-major. A data set whose samples do
    not fit is a :class:`CliError` naming both shapes and ``flag`` (how to give samples that
    fit); data set errors become :class:`CliError` too."""
    from spikformer_neuro.data import DatasetError, load_dataset
    from spikformer_neuro.data.arrays import Reshaped

    from compiler.encoding import COUNTS, encoding_of

    want, flat, lead = _want(graph)
    steps = graph.time_steps
    counts = encoding_of(graph) == COUNTS   # event data binned as the network takes it
    # a vector input has no image size: the data set is read at its own
    img_size = None if flat else int(graph.input_node.shape[1])
    record = {"source": "dataset", "dataset": name, "split": split, "shape": list(want)}

    def misfit(have) -> CliError:
        values = int(np.prod(have))
        return CliError(
            f"the data set {name} has samples of shape {_dims(have)} ({values} values); the "
            f"network takes {_dims(want)} ({int(np.prod(want))} values) per sample: give "
            f"samples that fit with {flag} X.npy ([B, {_dims(want)[1:]})")

    try:
        ds, info = load_dataset(name, split, data_dir, img_size=img_size, time_steps=steps,
                                event_counts=counts)
    except DatasetError as e:
        if img_size is not None:   # an image size the data set does not have?
            try:
                _, native = load_dataset(name, split, data_dir, time_steps=steps)
            except DatasetError:
                native = None
            if native is not None and tuple(native.input_shape) != want:
                raise misfit(tuple(native.input_shape)) from None
        raise CliError(render_error(e)) from None
    have = tuple(int(s) for s in info.input_shape)
    if have == want:
        return Samples(ds, record)
    if flat and have[:lead] == want[:lead] and \
            int(np.prod(have[lead:])) == int(np.prod(want[lead:])):
        return Samples(Reshaped(ds, want), {**record, "reshaped_from": list(have)})
    raise misfit(have)


def source_dataset(src, split: str, data_dir: Optional[str]):
    """The ``split`` of a :class:`compiler.pipeline.Source`'s data set, as its graph takes it
    (:func:`graph_samples`)."""
    return graph_samples(src.graph, src.dataset, split, data_dir).dataset


def graph_dataset(graph, split: str, data_dir: Optional[str], *, missing: str,
                  flag: str = "--input"):
    """The ``split`` of the data set a compiled graph names (its meta), at the graph's own
    image size and time steps (artifacts compiled from NIR files carry no model config).
    ``missing``: the message when the graph names none. Data set errors become
    :class:`CliError`, so that callers need not import the data code to catch them."""
    dataset = graph.meta.get("dataset")
    if not dataset:
        raise CliError(missing)
    return graph_samples(graph, dataset, split, data_dir, flag=flag).dataset


def load_npy(path: str, what: str, expected: str = "") -> np.ndarray:
    """A user's .npy file as an array of at least one sample, read without pickle. ``what``
    names it in messages (``--data 'x.npy'``), ``expected`` is appended to them (``expected
    vectors [B, 64] ...``)."""
    tail = f"; {expected}" if expected else ""
    try:
        arr = np.load(path, allow_pickle=False)  # never unpickle user files
    except (OSError, ValueError, EOFError) as e:
        raise CliError(f"cannot read {what}: {e}{tail}") from None
    if not isinstance(arr, np.ndarray):   # an .npz archive
        close = getattr(arr, "close", None)
        if close:
            close()
        raise CliError(f"{what} is an .npz archive, not a .npy array; save the array alone "
                       f"with numpy.save{tail}")
    if arr.ndim == 0:
        raise CliError(f"{what} holds a single number, not an array of samples{tail}")
    if len(arr) == 0:
        raise CliError(f"{what} holds no samples (shape {list(arr.shape)}); give at least "
                       f"one{tail}")
    return arr


def load_samples(graph, path: str, flag: str) -> np.ndarray:
    """A user's samples for ``graph`` (``flag``: the option that gave the file), as float32:
    read without pickle, then checked by ``compiler.encoding.check_samples`` (shape, real
    finite numbers, [0, 1] or binary spikes). Every failure is a :class:`CliError` naming
    the file and the expected shape."""
    from compiler.encoding import check_samples, describe_input

    what = f"{flag} '{path}'"
    x = load_npy(path, what, f"expected {describe_input(graph)}")
    try:
        x = check_samples(graph, x, what)
    except ValueError as e:
        raise CliError(str(e)) from None
    return x.astype(np.float32)


def load_labels(path: str, count: int, classes: int, *, item: str = "input", of: str = "",
                flag: str = "--labels") -> np.ndarray:
    """Integer class labels in 0..classes-1, one per sample (``count``; ``item`` and ``of``
    name them in messages: "2 inputs", "2 samples of --data 'x.npy'")."""
    what = f"{flag} '{path}'"
    expected = f"expected [{count}] integer class indices in 0..{classes - 1}"
    y = load_npy(path, what, expected)
    if y.dtype.kind not in "iu" and not (
            y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()):
        raise CliError(f"{what} has dtype {y.dtype} with values that are not whole numbers; "
                       f"give integer class indices ({expected})")
    if y.ndim != 1:
        raise CliError(f"{what} has shape {list(y.shape)}; give one integer class index per "
                       f"{item} (a 1-D array: {expected})")
    if len(y) != count:
        raise CliError(f"{what} has {len(y)} entries for {count} {item}s{of}; {expected}")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        raise CliError(f"{what}: label {y[bad[0]]} of {item} {bad[0]} is not a class of this "
                       f"network (0..{classes - 1})")
    return y


def file_samples(graph, path: str, flag: str, labels: Optional[str] = None,
                 note: Optional[str] = None) -> Samples:
    """A user's .npy samples (and labels) for ``graph``, checked (:func:`load_samples`)."""
    from spikformer_neuro.data.arrays import ArrayDataset

    x = load_samples(graph, path, flag)
    y = None
    if labels:
        y = load_labels(labels, len(x), int(graph.output_node.shape[0]), item="sample",
                        of=f" of {flag} '{path}'")
    record = {"source": flag, "path": str(path), "shape": list(x.shape[1:]),
              "labels": str(labels) if labels else None}
    if note:
        record["note"] = note
    return Samples(ArrayDataset(x, y), record)


def peek_dims(path: Optional[str]) -> Optional[int]:
    """The number of dimensions of the array in a .npy file (its header only), or None when
    it cannot be read (the full read names the problem later)."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(f)
        return len(header[0])
    except (OSError, ValueError, EOFError):
        return None


def stack_samples(dataset, n: int):
    """The first ``n`` samples as (a stacked tensor, labels as int64 numpy; None for a
    user's samples given without labels)."""
    import torch

    n = min(n, len(dataset))
    if hasattr(dataset, "arrays"):   # a user's arrays (spikformer_neuro.data.arrays)
        return dataset.head(n).arrays()
    xs, ys = zip(*(dataset[i] for i in range(n))) if n else ((), ())
    return (torch.stack(xs) if xs else torch.empty(0)), np.asarray(ys, dtype=np.int64)


def first_samples(dataset, n: Optional[int]):
    """The first ``n`` samples (all for None), as a dataset."""
    if n is None:
        return dataset
    head = getattr(dataset, "head", None)
    if head is not None:
        return head(n)
    from torch.utils.data import Subset

    return Subset(dataset, range(min(n, len(dataset))))


def labelled_batches(dataset, batch_size: int) -> Tuple[int, Iterator]:
    """(number of batches, ``(x, labels as numpy)`` batches in order; labels None for a
    user's samples given without labels)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size)
    labelled = getattr(dataset, "labelled", True)
    return len(loader), ((x, np.asarray(y) if labelled else None) for x, y in loader)


def compile_source(src, calibration: Optional[Samples], *, calibration_samples: int,
                   overflow: str, margin: float,
                   progress: Callable[[Iterable], Iterable] = lambda it: it):
    """(``compiler.pipeline.Compiled``, calibration samples used): ``src`` compiled as
    spikeform-compile does, calibrated on the first ``calibration_samples`` of
    ``calibration`` (None: none)."""
    from compiler.pipeline import compile_graph  # imports the model code

    calib = None
    if calibration is not None and calibration_samples:
        calib, _ = stack_samples(calibration.dataset, calibration_samples)
    return compile_graph(src.graph, calib, overflow, margin, progress), \
        (0 if calib is None else len(calib))


def check_data_flags(args, *, verify: bool, calibrate: bool) -> None:
    """--data / --labels / --calibration-data / --data-dir that cannot take effect (nothing
    to verify or calibrate, labels without samples, a data set that is not read), refused
    before any work."""
    no_verify = "with --no-verify (nothing is verified)"
    no_calib = "with --calibration-samples 0 (nothing is calibrated)"
    if args.labels and not args.data:
        raise CliError("--labels goes with --data (the labels of its samples); add --data "
                       "X.npy, or drop --labels")
    if args.labels and not verify:
        raise CliError(f"--labels has no effect {no_verify}; drop it")
    if args.calibration_data and not calibrate:
        raise CliError(f"--calibration-data has no effect {no_calib}; drop one of them")
    if args.data and not verify and not (calibrate and not args.calibration_data):
        raise CliError(f"--data has no effect {no_verify} "
                       + (f"and {no_calib}" if not calibrate else
                          "and --calibration-data (which calibrates instead)")
                       + "; drop it")
    reads_dataset = (verify and not args.data) or \
        (calibrate and not (args.calibration_data or args.data))
    if args.data_dir and not reads_dataset:
        raise CliError("--data-dir has no effect: no sample is read from a data set ("
                       + ("they come from --data" + (" and --calibration-data"
                                                     if args.calibration_data else "")
                          if args.data or args.calibration_data else "nothing is verified "
                          "or calibrated") + "); drop --data-dir")


def choose_samples(src, args, *, calibrate: bool, verify: bool
                   ) -> Tuple[object, Optional[Samples], Optional[Samples]]:
    """(``src``, calibration samples, verification samples) for spikeform-compile and
    -report, from ``args.data`` / ``args.labels`` / ``args.calibration_data`` (the user's
    .npy files) or the source's data set (``args.data_dir``): verification on ``--data``
    (else the test split), calibration on ``--calibration-data`` (else ``--data``, else the
    training split). A NIR file from another toolchain whose encoding the file cannot state
    reads its input as spike trains when ``--data`` holds them (``[B, T, ...]``)."""
    from compiler.encoding import SPIKES, encoding_of, sample_shape
    from compiler.pipeline import with_spike_input

    given = args.data or args.calibration_data
    dims = peek_dims(given)
    if dims is not None and dims == len(sample_shape(src.graph)) + 2 and \
            encoding_of(src.graph) != SPIKES and src.kind == "nir" and \
            "nir_convention" in src.graph.meta:
        src = with_spike_input(src)
    graph = src.graph
    verification = None
    if verify:
        if args.data:
            verification = file_samples(graph, args.data, "--data", args.labels)
        elif src.dataset:
            verification = graph_samples(graph, src.dataset, "test", args.data_dir)
    calibration = None
    if calibrate:
        if args.calibration_data:
            calibration = file_samples(graph, args.calibration_data, "--calibration-data")
        elif args.data:
            if verification is not None:
                calibration = Samples(verification.dataset, {
                    k: v for k, v in verification.record.items() if k != "labels"})
            else:
                calibration = file_samples(graph, args.data, "--data")
            calibration.record["note"] = ("no --calibration-data given: calibrated on "
                                          "--data")
        elif src.dataset:
            calibration = graph_samples(graph, src.dataset, "train", args.data_dir)
    missing = [what for what, need, got in (("calibration", calibrate, calibration),
                                            ("verification", verify, verification))
               if need and got is None]
    if missing:
        from compiler.encoding import describe_input

        raise CliError(f"{src.path} names no data set for {' and '.join(missing)}: pass "
                       f"--data X.npy ({describe_input(graph)}) with --labels Y.npy "
                       "(integer classes), or --dataset NAME (e.g. digits)")
    return src, calibration, verification


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
