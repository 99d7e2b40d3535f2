"""Images in class folders: data_dir/train/<class>/* and data_dir/test/<class>/*.

Unlike the small bundled data sets these can be arbitrarily large (ImageNet), so images are
decoded on access instead of being held in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from .augment import RandomShiftFlip
from .base import SPLITS, DatasetError, DatasetInfo, Request

DEFAULT_SIZE = 32


class ImageFolderData(Dataset):
    """torchvision ImageFolder samples as float32 RGB tensors in [0, 1], then augmented."""

    def __init__(self, folder, augment: Optional[Callable[[torch.Tensor], torch.Tensor]]):
        self.folder = folder
        self.augment = augment

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        x, label = self.folder[index]
        if self.augment is not None:
            x = self.augment(x)
        return x, int(label)


def load(req: Request):
    # torchvision is imported here, not at module level, to keep importing the package cheap.
    from torchvision import transforms
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import find_classes

    layout = "data_dir/train/<class>/*.png|jpg|... and data_dir/test/<class>/* (same classes)"
    root = req.require_data_dir(f"arrange the images as {layout}")
    size = req.img_size or DEFAULT_SIZE
    classes = {}
    for split in SPLITS:
        try:
            classes[split] = tuple(find_classes(str(root / split))[0])
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise DatasetError(f"{req.name}: no class folders in {root / split} ({exc}); "
                               f"expected {layout}") from exc
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        raise DatasetError(f"{req.name}: {root / 'train'} and {root / 'test'} must hold the "
                           f"same class folders; only in train: {only_train}, only in test: "
                           f"{only_test}")
    to_tensor = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    try:
        folder = ImageFolder(str(root / req.split), transform=to_tensor, loader=_load_rgb)
    except FileNotFoundError as exc:  # class folders without a single image
        raise DatasetError(f"{req.name}: {exc}") from exc
    augment = RandomShiftFlip(pad=max(1, size // 8), flip=True) if req.augment else None
    class_names: Tuple[str, ...] = classes[req.split]
    info = DatasetInfo(req.name, (3, size, size), len(class_names), class_names, False,
                       str(root))
    return ImageFolderData(folder, augment), info


def _load_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:  # includes PIL.UnidentifiedImageError
        raise DatasetError(f"cannot read image {Path(path)}: {exc}") from exc
