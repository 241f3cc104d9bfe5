"""Data: the embedded digits, the stratified split, class selection, limits, and clear errors for missing or
corrupted data."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from tests.support.configs import data_module
from pipeline.data import DataMissing, _idx_split, _mnist5k_table, _read_idx, mnist, mnist5k, stratified_split
from pipeline.errors import ConfigError


def test_mnist5k_holds_5000_real_digits_in_the_unit_range():
    _mnist5k_table.cache_clear()
    x, y = mnist5k()                                                 # parsed from the CSV, not from the cache
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1                             # bytes / 255, spanning the whole range
    assert torch.equal(torch.bincount(y), torch.full((10,), 500))
    assert 0.1 < x.mean() < 0.15                                     # MNIST's ink coverage, not noise or blanks


def test_mnist5k_parses_once_and_hands_out_fresh_tensors():
    x, y = mnist5k()
    x.zero_(), y.zero_()                                             # a caller writing into its copy
    again = mnist5k()
    assert again[0].max() == 1 and torch.equal(torch.bincount(again[1]), torch.full((10,), 500))
    assert _mnist5k_table.cache_info().hits >= 1 and not _mnist5k_table().flags.writeable


def test_default_split_is_disjoint_stratified_and_covers_every_class(digits):
    data = data_module()
    sizes = {name: len(y) for name, (_, y) in data.splits.items()}
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    for name, (_, y) in data.splits.items():
        counts = torch.bincount(y, minlength=10)
        assert (counts == sizes[name] // 10).all(), f"{name} is not stratified: {counts.tolist()}"
    parts = stratified_split(digits[1], [0.7, 0.1, 0.2], seed=0)
    indices = torch.cat(parts)
    assert len(indices) == 5000 and len(torch.unique(indices)) == 5000      # disjoint and complete
    # The module's splits are those index sets: no image is in two splits.
    x = digits[0].flatten(1)
    for (name, (xs, _)), part in zip(data.splits.items(), parts):
        assert torch.equal(xs.flatten(1), x[part]), name


def test_split_depends_on_split_seed_only():
    first, again = data_module(), data_module("seed=5")              # the training seed does not move the split
    other = data_module("data.split_seed=1")
    for name in ("train", "val", "test"):
        assert torch.equal(first.splits[name][0], again.splits[name][0])
        assert torch.equal(first.splits[name][1], again.splits[name][1])
    assert not torch.equal(first.splits["test"][0], other.splits["test"][0])


def test_digits_selects_and_relabels_two_classes(digits):
    data = data_module("data.digits=[3,7]")
    assert data.num_classes == 2
    originals = {bytes(image.numpy().tobytes()): int(label) for image, label in zip(*digits)}
    total = 0
    for name, (x, y) in data.splits.items():
        assert set(y.tolist()) == {0, 1}
        for image, label in zip(x, y):
            assert originals[bytes(image.numpy().tobytes())] == (3, 7)[int(label)]
        total += len(y)
    assert total == 1000                                             # every 3 and every 7, nothing else


def test_unknown_digit_is_refused():
    with pytest.raises(ConfigError, match="11"):
        data_module("data.digits=[3,11]")


def test_limit_caps_the_training_split_only():
    data = data_module("data.limit=123")
    assert len(data.splits["train"][1]) == 123
    assert len(data.splits["val"][1]) == 500 and len(data.splits["test"][1]) == 1000
    full = data_module()
    assert torch.equal(data.splits["train"][0], full.splits["train"][0][:123])


@pytest.mark.parametrize("limit", [0, -5])
def test_bad_limit_is_refused(limit):
    with pytest.raises(ConfigError, match=f"data.limit={limit}"):
        data_module(f"data.limit={limit}")


def test_batches_cover_the_split_once_per_epoch():
    data = data_module("data.limit=250")
    seen = torch.cat([y for _, y in data.train_dataloader()])
    assert len(seen) == 250 and len(data.train_dataloader()) == 3
    assert torch.equal(seen.sort().values, data.splits["train"][1].sort().values)


def test_missing_torchvision_data_says_how_to_get_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        mnist(root=str(tmp_path), download=False)
    message = str(caught.value)
    assert isinstance(caught.value, DataMissing)
    assert str(tmp_path) in message and "download" in message
    assert "\n" not in message


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_files_round_trip_and_corruption_is_a_clear_error(tmp_path, digits, suffix):
    images = (digits[0][:20, 0] * 255).round().numpy().astype(np.uint8)
    labels = digits[1][:20].numpy().astype(np.uint8)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels)
    x, y = _idx_split(tmp_path, "t10k")
    assert torch.equal(x, digits[0][:20]) and torch.equal(y, digits[1][:20])

    path = tmp_path / f"t10k-images-idx3-ubyte{suffix}"
    whole = path.read_bytes()
    for cut in (len(whole) // 2, 10, 2):                             # truncated body, header, first bytes
        path.write_bytes(whole[:cut])
        with pytest.raises(ConfigError, match="corrupted data file") as caught:
            _read_idx(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
