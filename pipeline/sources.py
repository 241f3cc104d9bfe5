"""Where a data set's images come from: a folder of image files (ImageFolder layout), a `.npz` of arrays, or a
torchvision data set by name. Every source ends in the same form, checked the same way: images as float tensors
in [0, 1] with a channel axis ([N, C, H, W]), labels 0..classes-1 (pipeline.data splits and serves them).

A problem with the input is one line naming the file and what is wrong (ConfigError).
"""
from __future__ import annotations

import inspect
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from pipeline.errors import ConfigError, one_line
from pipeline.data_files import IMAGE_SUFFIXES

Split = tuple[torch.Tensor, torch.Tensor]  # images [N, C, H, W] in [0, 1], labels [N]

CHANNELS = (1, 3, 4)   # grey, RGB, RGBA: how an image array's channel axis is told from its height and width


class DataMissing(ConfigError):
    """A data set is not on disk and cannot be downloaded."""


def as_images(array: Any, where: str) -> torch.Tensor:
    """Images as float32 [N, C, H, W] in [0, 1]: bytes are divided by 255, floats must already lie in [0, 1];
    [N, H, W] gains a channel axis, [N, H, W, C] (numpy's and PIL's order) is turned to [N, C, H, W]."""
    x = torch.as_tensor(np.asarray(array))
    if x.ndim not in (3, 4):
        raise ConfigError(f"{where}: images have shape {tuple(x.shape)}; expected [N, H, W], [N, C, H, W] or "
                          "[N, H, W, C]")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
        if len(x) and not (x.min() >= 0 and x.max() <= 1):   # also refuses NaN
            raise ConfigError(f"{where}: float pixels span [{float(x.min()):g}, {float(x.max()):g}]; expected "
                              "[0, 1] (or uint8 bytes 0..255)")
    else:
        raise ConfigError(f"{where}: images of type {x.dtype}; expected uint8 (0..255) or float in [0, 1]")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.shape[1] not in CHANNELS and x.shape[-1] in CHANNELS:
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


def as_labels(array: Any, where: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(array))
    if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(f"{where}: labels of shape {tuple(y.shape)} and type {y.dtype}; expected one integer "
                          "class per image")
    return y.to(torch.long)


def checked(train: Split, test: Split | None, where: str) -> None:
    """The one check every source passes (TensorDataModule.setup): as many labels as images, and labels
    0..classes-1 where classes is one more than the largest training label and every class has training examples."""
    for name, (x, y) in (("train", train), ("test", test)) if test is not None else (("data", train),):
        if len(x) != len(y):
            raise ConfigError(f"{where}: {name} has {len(x)} images but {len(y)} labels")
        if not len(y):
            raise ConfigError(f"{where}: {name} holds no images")
    labels = train[1]
    if int(labels.min()) < 0:
        raise ConfigError(f"{where}: label {int(labels.min())} is negative; labels are classes 0..classes-1")
    if int(labels.min()) == 1:   # 1..K, as in MATLAB or R
        raise ConfigError(f"{where}: labels start at 1 (1..{int(labels.max())}); expected 0..{int(labels.max()) - 1}: "
                          "subtract 1 from every label")
    counts = torch.bincount(labels)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ConfigError(f"{where}: classes {empty} have no training images; labels must be 0..{len(counts) - 1} "
                          "with every class present")
    if test is not None:
        outside = test[1][(test[1] < 0) | (test[1] >= len(counts))]
        if len(outside):
            raise ConfigError(f"{where}: test label {int(outside[0])} is outside 0..{len(counts) - 1} (the classes "
                              "of the training data)")
        if train[0].shape[1:] != test[0].shape[1:]:
            raise ConfigError(f"{where}: train images are {tuple(train[0].shape[1:])}, test images "
                              f"{tuple(test[0].shape[1:])}; expected one shape")


# --- data=folder -------------------------------------------------------------------------------------------


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def class_folders(split: Path) -> dict[str, list[Path]]:
    """The class folders of train/ or test/ and their image files, in name order (ImageFolder's classes)."""
    if not split.is_dir():
        raise ConfigError(f"{split}: no such folder; data=folder expects <root>/train/<class>/*.png and "
                          "<root>/test/<class>/*.png")
    classes = {p.name: image_files(p) for p in sorted(split.iterdir()) if p.is_dir()}
    if not classes:
        raise ConfigError(f"{split}: no class folders; expected one folder of images per class")
    for name, files in classes.items():
        if not files:
            raise ConfigError(f"{split / name}: empty class (no {', '.join(IMAGE_SUFFIXES[:3])}... files)")
    return classes


def read_image(path: Path) -> np.ndarray:
    """One image file as uint8 [H, W] (grey) or [H, W, 3] (colour)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
            return np.asarray(image.convert("L" if grey else "RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise ConfigError(f"{path}: not a readable image ({one_line(error)})") from None


def read_class_folders(split: Path, classes: list[str]) -> Split:
    found = class_folders(split)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ConfigError(f"{split / unknown[0]}: not a class of the training folder (classes: {', '.join(classes)})")
    images, labels, first = [], [], None
    for label, name in enumerate(classes):
        for path in found.get(name, []):
            image = read_image(path)
            if first is None:
                first = (path, image.shape)
            elif image.shape != first[1]:
                raise ConfigError(f"{path}: image of shape {image.shape}, but {first[0]} is {first[1]}; every image "
                                  "must have one size and colour mode")
            images.append(image)
            labels.append(label)
    return as_images(np.stack(images), str(split)), torch.tensor(labels, dtype=torch.long)


def folder(root: str) -> tuple[Split, Split]:
    """data=folder: `<root>/train/<class>/*.png` and `<root>/test/<class>/*.png` (torchvision's ImageFolder
    layout); classes are the training folder's subfolders in name order, labelled 0, 1, ..."""
    base = Path(root)
    classes = list(class_folders(base / "train"))
    return read_class_folders(base / "train", classes), read_class_folders(base / "test", classes)


# --- data=arrays -------------------------------------------------------------------------------------------

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Loading arrays, turning images into float32 and splitting them took ten times their size in memory (a .npz of
# 627 MB of zeros reached 6.4 GB): arrays larger than this share of the machine's memory are refused unread.
MEMORY_PER_BYTE = 10


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def array_bytes(npz: Any, key: str) -> int:
    """The size of one array of an open .npz, from its header (a compressed member is not inflated)."""
    with npz.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"{key}: .npy format version {version} (expected 1.0 or 2.0)")
        shape, _, dtype = read_header[version](member)
    return math.prod(shape) * dtype.itemsize


def check_fits(file: Path, size: int) -> None:
    """Refuse arrays of `size` bytes that loading would need more of this machine's memory for than it has."""
    memory = memory_bytes()
    if size * MEMORY_PER_BYTE > memory:
        raise ConfigError(f"{file}: its arrays hold {size / 1e9:.2f} GB, more than the "
                          f"{memory / MEMORY_PER_BYTE / 1e9:.2f} GB this machine can load ({MEMORY_PER_BYTE} times "
                          f"their size, of its {memory / 1e9:.1f} GB of memory); use fewer or smaller images")


def arrays(path: str) -> tuple[Split, Split]:
    """data=arrays: one `.npz` holding x_train, y_train, x_test, y_test (images uint8 or float in [0, 1])."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"data.path={path}: no such file; expected a .npz with {', '.join(ARRAY_KEYS)}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            check_fits(file, sum(array_bytes(npz, key) for key in ARRAY_KEYS if key in npz.files))
            loaded = {key: npz[key] for key in ARRAY_KEYS if key in npz.files}
            found = npz.files
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise ConfigError(f"{file}: not a readable .npz ({one_line(error)})") from None
    missing = [key for key in ARRAY_KEYS if key not in loaded]
    if missing:
        raise ConfigError(f"{file}: no {', '.join(missing)} (found {', '.join(found) or 'nothing'}); expected "
                          f"{', '.join(ARRAY_KEYS)}")
    train = as_images(loaded["x_train"], f"{file}: x_train"), as_labels(loaded["y_train"], f"{file}: y_train")
    test = as_images(loaded["x_test"], f"{file}: x_test"), as_labels(loaded["y_test"], f"{file}: y_test")
    return train, test


# --- data=torchvision --------------------------------------------------------------------------------------


def dataset_class(name: str) -> type:
    import torchvision

    found = getattr(torchvision.datasets, name, None)
    if not isinstance(found, type):
        raise ConfigError(f"data.dataset={name!r} is not a torchvision data set; e.g. MNIST, FashionMNIST, KMNIST, "
                          "CIFAR10, CIFAR100, SVHN")
    return found


def split_argument(cls: type, train: bool) -> dict[str, Any]:
    """torchvision names its splits two ways: `train=True/False` (MNIST, CIFAR) or `split="train"/"test"` (SVHN)."""
    parameters = inspect.signature(cls.__init__).parameters
    if "train" in parameters:
        return {"train": train}
    if "split" in parameters:
        return {"split": "train" if train else "test"}
    raise ConfigError(f"data.dataset={cls.__name__} has neither a train nor a split argument; use data=folder")


def dataset_split(dataset: Any, where: str) -> Split:
    """A torchvision data set's images and labels: its in-memory arrays when it keeps them (MNIST, CIFAR, SVHN),
    else every item read once."""
    labels = next((getattr(dataset, name) for name in ("targets", "labels") if hasattr(dataset, name)), None)
    if hasattr(dataset, "data") and labels is not None and isinstance(dataset.data, (np.ndarray, torch.Tensor)):
        return as_images(dataset.data, where), as_labels(labels, where)
    items = [dataset[i] for i in range(len(dataset))]
    try:
        images = np.stack([np.asarray(image) for image, _ in items])
    except ValueError:
        raise ConfigError(f"{where}: images of different sizes; resize them into a folder and use data=folder"
                          ) from None
    return as_images(images, where), as_labels([label for _, label in items], where)


@contextmanager
def private_download(root: Path) -> Iterator[Path]:
    """A folder of this process's own (mode 0700, next to root) to download into; when the block ends well, its
    files are moved into root (a file already there, e.g. from another process downloading too, is kept). Either
    way the folder is removed, and nothing else: a failed download never touches root."""
    root.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.download-"))
    try:
        yield folder
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
            target = root / file.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, target)   # never replaces a file: whoever moved it in first wins
            except FileExistsError:
                pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def torchvision_split(cls: type, root: str | Path, train: bool, download: bool, options: Mapping[str, Any]) -> Any:
    """One split of a torchvision data set; a missing or undownloadable one is DataMissing."""
    try:
        return cls(str(root), download=download, **split_argument(cls, train), **options)
    except (RuntimeError, OSError) as error:
        raise DataMissing(one_line(error)) from None
    except TypeError as error:
        raise ConfigError(f"data.dataset_options={dict(options)} do not fit {cls.__name__}: {error}") from None


def torchvision(dataset: str, root: str, download: bool = False, dataset_options: Mapping[str, Any] | None = None,
                hint: str = "download it on a machine with network access into that folder") -> tuple[Split, Split]:
    """data=torchvision: the train and test splits of torchvision.datasets.<dataset> under root; where they are
    missing and `download` allows, downloaded first (private_download)."""
    cls, options, where = dataset_class(dataset), dict(dataset_options or {}), f"{dataset} under data.root={root}"
    try:
        try:
            loaded = [torchvision_split(cls, root, train, False, options) for train in (True, False)]
        except DataMissing:
            if not download:
                raise
            with private_download(Path(root)) as folder:
                for train in (True, False):
                    torchvision_split(cls, folder, train, True, options)
            loaded = [torchvision_split(cls, root, train, False, options) for train in (True, False)]
    except DataMissing as error:
        raise DataMissing(f"{dataset} not found under data.root={root} ({error}); {hint}") from None
    return dataset_split(loaded[0], where), dataset_split(loaded[1], where)
