"""Tests of spikformer_neuro.data: the real offline data sets (sklearn digits, Fashion-MNIST
from the Debian package), tiny synthetic files in the genuine formats for the others, and the
error paths that tell a user what to install or put where."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spikformer_neuro.data as data_pkg
from spikformer_neuro.data import DatasetError, DatasetInfo, dataset_names, load_dataset
from spikformer_neuro.data.augment import RandomShiftFlip
from spikformer_neuro.data.events import split_per_class
from spikformer_neuro.data.frames import events_to_count_frames, events_to_frames

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def check_samples(dataset, info: DatasetInfo, count: int = 5) -> None:
    """The contract every data set keeps: float32 in [0, 1] of info.input_shape, int labels."""
    for i in range(min(count, len(dataset))):
        x, label = dataset[i]
        assert x.dtype == torch.float32 and tuple(x.shape) == info.input_shape
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert type(label) is int and 0 <= label < info.num_classes
    assert len(info.class_names) == info.num_classes
    assert all(isinstance(n, str) for n in info.class_names)


# -- registry ---------------------------------------------------------------------------------
def test_dataset_names():
    assert set(dataset_names()) == {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
                                    "imagefolder", "dvs-gesture", "cifar10-dvs"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="nope", split="train"), "known: digits"),
    (dict(name="digits", split="val"), "unknown split 'val'"),
    (dict(name="digits", split="train", img_size=28), "not resized"),
    (dict(name="digits", split="train", img_size=0), "img_size must be a positive integer"),
    (dict(name="digits", split="train", time_steps=-1), "time_steps must be a positive"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(**kwargs)


# -- digits (real) ----------------------------------------------------------------------------
def test_digits_split_is_fixed_and_stratified():
    train, info = load_dataset("digits", "train")
    test, _ = load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert info == DatasetInfo("digits", (1, 8, 8), 10, tuple("0123456789"), False,
                               "scikit-learn bundled")
    check_samples(train, info)
    assert train.images.max() == 16  # raw counts; samples are divided by 16
    # Stratified: every class keeps its share of the 20% test split (each class has ~180).
    test_counts = torch.bincount(test.labels, minlength=10)
    all_counts = test_counts + torch.bincount(train.labels, minlength=10)
    assert torch.all((test_counts.float() - 0.2 * all_counts).abs() <= 1)
    again, _ = load_dataset("digits", "test")
    assert torch.equal(again.labels, test.labels) and torch.equal(again.images, test.images)


# -- Fashion-MNIST (real, from the Debian package) ---------------------------------------------
@pytest.fixture(scope="module")
def fashion():
    return {split: load_dataset("fashion-mnist", split) for split in ("train", "test")}


@pytest.mark.needs_fashion_mnist
def test_fashion_mnist_real(fashion):
    (train, info), (test, test_info) = fashion["train"], fashion["test"]
    assert (len(train), len(test)) == (60000, 10000)
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10 and not info.event
    assert info.class_names[0] == "T-shirt/top" and info.class_names[9] == "Ankle boot"
    assert info.source == str(FASHION_DIR) and test_info == info
    check_samples(train, info)
    check_samples(test, info)
    # The genuine data set is balanced: 6000 / 1000 images per class.
    assert torch.all(torch.bincount(train.labels, minlength=10) == 6000)
    assert torch.all(torch.bincount(test.labels, minlength=10) == 1000)


def test_fashion_mnist_missing_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion-mnist", "train", tmp_path)
    assert str(tmp_path) in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value)


# -- MNIST (synthetic IDX files) ----------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        for kind, array in zip(("images-idx3", "labels-idx1"), arrays[prefix]):
            raw = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_synthetic(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    test, info = load_dataset("mnist", "test", str(tmp_path))
    assert len(test) == 5 and info.input_shape == (1, 28, 28)
    assert info.class_names == tuple("0123456789") and info.source == str(tmp_path)
    check_samples(test, info)
    x, label = test[3]
    images, labels = arrays["t10k"]
    assert torch.equal((x[0] * 255).round().to(torch.int64), torch.from_numpy(images[3]))
    assert label == labels[3]
    assert len(load_dataset("mnist", "train", tmp_path)[0]) == 12


def test_mnist_needs_data_dir_and_files(tmp_path):
    with pytest.raises(DatasetError, match="no data directory given.*t10k-images-idx3-ubyte"):
        load_dataset("mnist", "test")
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", "test", tmp_path)
    assert str(tmp_path) in str(err.value) and "t10k-labels-idx1-ubyte" in str(err.value)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: gzip.compress(raw[:-100]), "header announces"),          # truncated data
    (lambda raw: gzip.compress(raw)[:-20], "truncated or corrupt"),        # cut gzip stream
    (lambda raw: gzip.compress(b"\x01\x02" + raw[2:]), "bad magic number"),
    (lambda raw: gzip.compress(raw[:2] + b"\x0d" + raw[3:]), "element type 0x0d"),
])
def test_damaged_idx_names_the_file(tmp_path, damage, message):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(gzip.decompress(path.read_bytes())))
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("mnist", "test", tmp_path)
    assert str(path) in str(err.value)


def test_idx_image_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DatasetError, match="5 images but .* 4 labels"):
        load_dataset("mnist", "test", tmp_path)


# -- CIFAR (synthetic pickles in the genuine layout) ---------------------------------------------
def cifar_batch(rng, n, labels_key, num_classes):
    return {b"batch_label": b"synthetic batch",
            labels_key: [int(v) for v in rng.integers(0, num_classes, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def dump(path: Path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(parent: Path) -> Path:
    folder = parent / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    # Protocol 2, as the genuine (Python 2) files.
    for i in range(1, 6):
        dump(folder / f"data_batch_{i}", cifar_batch(rng, 3, b"labels", 10), protocol=2)
    dump(folder / "test_batch", cifar_batch(rng, 4, b"labels", 10), protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    dump(folder / "batches.meta", {b"num_cases_per_batch": 3, b"label_names": names,
                                   b"num_vis": 3072}, protocol=2)
    return folder


def test_cifar10_synthetic(tmp_path):
    folder = write_cifar10(tmp_path)
    train, info = load_dataset("cifar10", "train", tmp_path, augment=True)
    assert len(train) == 15 and info.input_shape == (3, 32, 32)
    assert info.class_names[1] == "automobile" and info.source == str(folder)
    check_samples(train, info)
    test, _ = load_dataset("cifar10", "test", folder)  # the folder itself works too
    record = pickle.load(open(folder / "test_batch", "rb"), encoding="bytes")
    x, label = test[2]
    # Rows hold the red, green and blue 32x32 planes one after the other.
    expected = torch.from_numpy(record[b"data"][2].reshape(3, 32, 32).astype(np.float32)) / 255
    assert torch.equal(x, expected) and label == record[b"labels"][2]


def test_cifar100_synthetic(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("test", 2)):
        batch = cifar_batch(rng, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
        dump(folder / split, batch)
    dump(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                           b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    train, info = load_dataset("cifar100", "train", tmp_path)
    assert len(train) == 6 and info.num_classes == 100 and info.class_names[7] == "fine7"
    check_samples(train, info)
    assert len(load_dataset("cifar100", "test", tmp_path)[0]) == 2


class _RunsShellCommand:
    """What a malicious pickle looks like: unpickling it would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("victim", ["batches.meta", "test_batch"])
def test_malicious_cifar_pickle_is_refused_unexecuted(tmp_path, victim):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    dump(folder / victim, {b"label_names": _RunsShellCommand(f"touch {marker}"),
                           b"data": _RunsShellCommand(f"touch {marker}"), b"labels": []})
    with pytest.raises(DatasetError, match="refusing to unpickle") as err:
        load_dataset("cifar10", "test", tmp_path)
    assert str(folder / victim) in str(err.value)
    assert not marker.exists()


def test_cifar_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", "train", tmp_path)
    assert str(tmp_path) in str(err.value) and "cifar-10-batches-py" in str(err.value)
    with pytest.raises(DatasetError, match="no data directory given"):
        load_dataset("cifar100", "train")
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="lacks data_batch_3"):
        load_dataset("cifar10", "test", tmp_path)
    (folder / "test_batch").write_bytes((folder / "batches.meta").read_bytes()[:30])
    (folder / "data_batch_3").write_bytes(b"")
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset("cifar10", "test", tmp_path)


# -- imagefolder ----------------------------------------------------------------------------------
def write_images(root: Path, classes_by_split):
    rng = np.random.default_rng(3)
    for split, classes in classes_by_split.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i, size in enumerate([(20, 12), (9, 30)]):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                image = Image.fromarray(pixels)
                (image.convert("L") if i else image).save(root / split / name / f"{i}.png")


def test_imagefolder(tmp_path):
    write_images(tmp_path, {"train": ["cat", "dog"], "test": ["cat", "dog"]})
    train, info = load_dataset("imagefolder", "train", tmp_path, img_size=16, augment=True)
    assert len(train) == 4 and info.input_shape == (3, 16, 16)
    assert info.class_names == ("cat", "dog")
    check_samples(train, info)  # includes a grayscale image, converted to RGB
    assert [train[i][1] for i in range(4)] == [0, 0, 1, 1]
    assert load_dataset("imagefolder", "test", tmp_path)[1].input_shape == (3, 32, 32)


def test_imagefolder_errors(tmp_path):
    write_images(tmp_path, {"train": ["cat", "dog"], "test": ["cat", "emu"]})
    with pytest.raises(DatasetError, match=r"only in train: \['dog'\], only in test: \['emu'\]"):
        load_dataset("imagefolder", "test", tmp_path)
    with pytest.raises(DatasetError, match="no class folders in .*nowhere"):
        load_dataset("imagefolder", "train", tmp_path / "nowhere")


# -- augmentation -------------------------------------------------------------------------------
def test_augmentation_keeps_shape_and_range():
    plain, info = load_dataset("digits", "train")
    augmented, _ = load_dataset("digits", "train", augment=True)
    torch.manual_seed(0)
    changed = 0
    for i in range(50):
        x, label = augmented[i]
        assert x.shape == info.input_shape and 0 <= x.min() and x.max() <= 1
        assert label == plain[i][1]
        changed += not torch.equal(x, plain[i][0])
    assert changed > 10
    test, _ = load_dataset("digits", "test", augment=True)  # no augmentation on test data
    assert all(torch.equal(test[i][0], load_dataset("digits", "test")[0][i][0])
               for i in range(3))


def test_shift_and_flip():
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5) + 1
    torch.manual_seed(1)
    for _ in range(20):
        y = RandomShiftFlip(pad=1, flip=False)(x)
        assert y.shape == x.shape
        # A shift by at most one pixel keeps the centre of the image (in some position).
        assert bool(torch.isin(x[:, 1:3, 1:4], y).all())
    flips = {torch.equal(RandomShiftFlip(pad=0, flip=True)(x), x.flip(-1)) for _ in range(20)}
    assert flips == {True, False}


# -- event data ----------------------------------------------------------------------------------
def make_events(rows):
    return np.array([tuple(r) for r in rows], dtype=EVENT_DTYPE)


def test_events_to_frames_bins_like_tonic():
    # t spans 0..100 -> 4 windows of 25 ticks: [0,25) [25,50) [50,75) [75,100); t=100 is
    # past the last whole window and is dropped, like tonic's ToFrame(n_time_bins=4).
    events = make_events([(1, 2, 1, 0), (1, 2, 1, 10), (3, 4, 0, 30), (5, 6, 1, 74),
                          (7, 8, 0, 99), (9, 9, 1, 100), (200, 0, 1, 50), (0, -1, 0, 50)])
    frames = events_to_frames(events, 4, height=16, width=16)
    assert frames.shape == (4, 2, 16, 16) and frames.dtype == np.float32
    expected = np.zeros_like(frames)
    expected[0, 1, 2, 1] = 1.0    # two events on one pixel: binary, still 1
    expected[1, 0, 4, 3] = 1.0    # p = 0 -> OFF channel 0
    expected[2, 1, 6, 5] = 1.0
    expected[3, 0, 8, 7] = 1.0    # off-sensor events (x=200, y=-1) are dropped
    assert np.array_equal(frames, expected)


def test_events_to_frames_edge_cases():
    assert not events_to_frames(make_events([]), 3, 8, 8).any()
    short = events_to_frames(make_events([(0, 0, 1, 5), (1, 0, 1, 6)]), 4, 8, 8)
    assert short[0, 1, 0, 0] == 1 and short[1, 1, 0, 1] == 1 and short.sum() == 2
    # Fields are found by name (CIFAR10-DVS orders them t, x, y, p); p may be -1/+1.
    signed = np.array([(0, 2, 3, -1), (4, 2, 3, 1), (9, 0, 0, 1)],
                      dtype=[("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
    frames = events_to_frames(signed, 1, 8, 8)
    assert frames[0, 0, 3, 2] == 1 and frames[0, 1, 3, 2] == 1 and frames.sum() == 2


def test_cifar10_dvs_split_is_fixed_per_class():
    paths = [f"/d/{c}/{i:04d}.aedat4" for c in ("cat", "dog") for i in range(20)]
    labels = [0] * 20 + [1] * 20
    train, test = split_per_class(paths, labels, 0.1)
    assert sorted(paths[i] for i in test) == ["/d/cat/0018.aedat4", "/d/cat/0019.aedat4",
                                              "/d/dog/0018.aedat4", "/d/dog/0019.aedat4"]
    assert len(train) == 36 and not set(train) & set(test)
    order = list(reversed(range(40)))  # the file system's listing order must not matter
    train2, test2 = split_per_class([paths[i] for i in order], [labels[i] for i in order], 0.1)
    assert sorted(paths[order[i]] for i in test2) == sorted(paths[i] for i in test)


@pytest.mark.parametrize("name, needed", [("dvs-gesture", "ibmGestureTrain.tar.gz"),
                                          ("cifar10-dvs", "CIFAR10DVS.zip")])
def test_event_files_missing(tmp_path, name, needed):
    with pytest.raises(DatasetError, match="no data directory given"):
        load_dataset(name, "train")
    with pytest.raises(DatasetError) as err:
        load_dataset(name, "train", tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and needed in message and "Nothing is downloaded" in message
    with pytest.raises(DatasetError, match="not resized"):
        load_dataset(name, "train", tmp_path, img_size=64)


def write_gesture_recordings(save_to: Path) -> None:
    """tonic 1.7.0's DVSGesture layout: the archive plus 100 recordings <label>.npy."""
    root = save_to / "DVSGesture"
    (root / "ibmGestureTrain").mkdir(parents=True)
    (root / "ibmGestureTrain.tar.gz").write_bytes(b"")
    rng = np.random.default_rng(4)
    for user in range(10):
        folder = root / "ibmGestureTrain" / f"user{user:02d}_led"
        folder.mkdir()
        for label in range(10):
            events = make_events([(*rng.integers(0, 128, 2), rng.integers(0, 2), t)
                                  for t in range(0, 800, 50)])
            np.save(folder / f"{label}.npy", events)


@pytest.fixture
def fresh_tonic_offline():
    """Forget the tonic_offline module before and after, so each test imports it against
    the tonic that it installs."""
    def forget():
        sys.modules.pop("spikformer_neuro.data.tonic_offline", None)
        if hasattr(data_pkg, "tonic_offline"):
            delattr(data_pkg, "tonic_offline")
    forget()
    yield
    forget()


def test_tonic_missing(tmp_path, monkeypatch, fresh_tonic_offline):
    write_gesture_recordings(tmp_path)
    monkeypatch.setitem(sys.modules, "tonic", None)  # makes `import tonic` fail
    with pytest.raises(DatasetError, match=r"pip install tonic==1\.7\.0"):
        load_dataset("dvs-gesture", "train", tmp_path)


class FakeDVSGesture:
    """Stands in for tonic.datasets.DVSGesture (not installed here) with the behaviour that
    matters: reads save_to/<class name>/, downloads when its check fails."""
    complete = True

    def __init__(self, save_to, train=True):
        self.location_on_system = os.path.join(save_to, type(self).__name__)
        self.filename = "ibmGestureTrain.tar.gz"
        if not self.complete:
            self.download()
        folder = Path(self.location_on_system, "ibmGestureTrain" if train else "ibmGestureTest")
        self.data = sorted(folder.glob("**/*.npy"))
        self.targets = [int(p.stem) for p in self.data]

    def download(self):
        raise AssertionError("tried to download")

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return np.load(self.data[index]), self.targets[index]


def install_fake_tonic(monkeypatch):
    tonic = types.ModuleType("tonic")
    tonic.datasets = types.ModuleType("tonic.datasets")
    tonic.datasets.DVSGesture = type("DVSGesture", (FakeDVSGesture,), {})
    tonic.datasets.CIFAR10DVS = type("CIFAR10DVS", (FakeDVSGesture,), {})
    monkeypatch.setitem(sys.modules, "tonic", tonic)
    monkeypatch.setitem(sys.modules, "tonic.datasets", tonic.datasets)
    return tonic


def test_dvs_gesture_through_tonic(tmp_path, monkeypatch, fresh_tonic_offline):
    tonic = install_fake_tonic(monkeypatch)
    write_gesture_recordings(tmp_path)

    train, info = load_dataset("dvs-gesture", "train", tmp_path / "DVSGesture", time_steps=4)
    assert info.event and info.input_shape == (4, 2, 128, 128) and info.num_classes == 11
    assert info.source == str(tmp_path / "DVSGesture") and len(train) == 100
    check_samples(train, info, count=3)
    frames, label = train[0]
    assert set(frames.unique().tolist()) <= {0.0, 1.0} and frames.sum() > 0
    assert label == int(train.recordings.data[0].stem)
    # a network that takes event counts gets count frames of the same recordings
    counted, info_c = load_dataset("dvs-gesture", "train", tmp_path / "DVSGesture", time_steps=4,
                                   event_counts=True)
    assert info_c.input_shape == info.input_shape
    counts, label_c = counted[0]
    events = np.load(train.recordings.data[0])
    assert label_c == label and counts.sum() == len(events)
    assert np.array_equal(counts.numpy(), events_to_count_frames(events, 4, 128, 128))

    tonic.datasets.DVSGesture.complete = False
    with pytest.raises(DatasetError, match="downloading is disabled"):
        load_dataset("dvs-gesture", "train", tmp_path)


def test_cifar10_dvs_needs_aedat(tmp_path, monkeypatch, fresh_tonic_offline):
    install_fake_tonic(monkeypatch)
    monkeypatch.setitem(sys.modules, "aedat", None)
    root = tmp_path / "CIFAR10DVS"
    (root / "cat").mkdir(parents=True)
    (root / "CIFAR10DVS.zip").write_bytes(b"")
    for i in range(1000):
        (root / "cat" / f"cifar10_cat_{i}.aedat4").write_bytes(b"")
    with pytest.raises(DatasetError, match="pip install aedat"):
        load_dataset("cifar10-dvs", "train", tmp_path)
