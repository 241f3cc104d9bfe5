"""Any image data: data=folder, data=arrays and data=torchvision end as [0, 1] images split by the one path every
source takes; bad data is one line naming the file; data.root is resolved on the driver and is not part of a job
id; a sweep fetches downloadable data once, on its driver; a failed download leaves nothing behind."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import pipeline.sources
from tests.support.configs import data_module
from pipeline.config import CONF_DIR
from pipeline.data import DEBIAN_FASHION_MNIST, _idx_split
from pipeline.errors import ConfigError
from pipeline.sources import DataMissing
from pipeline.stages.fetch import fetch_data
from pipeline.stages.plan import plan

# A small grid: softmax, two seeds (the main experiment's ids are pinned in test_plan.test_main_job_ids_are_stable).
GRID = ("sweep.grid.model=softmax", "sweep.grid.regularizer=none", "+sweep.grid.seed='0,1'")


def bytes_of(digits, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` digits of classes 0, 1, 2 (shuffled), as uint8 images and labels."""
    x, y = digits
    keep = torch.nonzero(y < 3).flatten()
    keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))][:count]
    return (x[keep, 0] * 255).round().to(torch.uint8).numpy(), y[keep].numpy()


def write_npz(path: Path, x: np.ndarray, y: np.ndarray, n_train: int, **replace: np.ndarray) -> Path:
    arrays = {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}
    np.savez(path, **{**arrays, **replace})
    return path


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, n_train: int, names=("zero", "one", "two")) -> Path:
    for index, (image, label) in enumerate(zip(x, y)):
        folder = root / ("train" if index < n_train else "test") / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return root


def test_arrays_end_as_unit_range_images_with_a_stratified_validation_split(tmp_path, digits):
    x, y = bytes_of(digits, 120)
    data = data_module("data=arrays", f"data.path={write_npz(tmp_path / 'd.npz', x, y, 90)}")
    (x_test, y_test), (_, y_val) = data.splits["test"], data.splits["val"]
    assert torch.equal(x_test, torch.from_numpy(x[90:]).float().div(255).unsqueeze(1))   # the file's own test set
    assert torch.equal(y_test, torch.from_numpy(y[90:]).long())
    counts = np.bincount(y[:90], minlength=3)
    assert torch.bincount(y_val, minlength=3).tolist() == [round(0.1 * c) for c in counts]   # stratified
    assert len(data.splits["train"][1]) + len(y_val) == 90 and data.num_classes == 3 and data.input_shape == (1, 28, 28)
    # Floats in [0, 1] with the channel axis last (numpy's order) arrive as [N, C, H, W], unchanged.
    colour = np.random.default_rng(0).random((40, 6, 5, 3), dtype=np.float32)
    labels = np.arange(40) % 2
    data = data_module("data=arrays", f"data.path={write_npz(tmp_path / 'c.npz', colour, labels, 30)}")
    assert torch.equal(data.splits["test"][0], torch.from_numpy(colour[30:]).permute(0, 3, 1, 2))
    assert data.input_shape == (3, 6, 5)


def test_folder_classes_are_its_subfolders_in_name_order(tmp_path, digits):
    x, y = bytes_of(digits, 60)
    names = ("b_one", "c_two", "a_zero")     # name order: a_zero (digit 2) -> 0, b_one (0) -> 1, c_two (1) -> 2
    root = write_folder(tmp_path / "images", x, y, 45, names)
    data = data_module("data=folder", f"data.root={root}")
    relabelled = torch.tensor([1, 2, 0])[torch.from_numpy(y).long()]     # digit -> its folder's rank in name order
    x_test, y_test = data.splits["test"]
    order = np.argsort(relabelled[45:].numpy(), kind="stable")              # the folder reads class by class
    assert torch.equal(y_test, relabelled[45:][order])
    assert torch.equal(x_test, torch.from_numpy(x[45:][order]).float().div(255).unsqueeze(1))   # PNG round trip
    assert len(data.splits["val"][1]) == sum(round(0.1 * c) for c in np.bincount(y[:45]))
    again = data_module("data=folder", f"data.root={root}")
    assert torch.equal(again.splits["val"][0], data.splits["val"][0])      # the fixed split seed


def bad_arrays(tmp_path, x, y):
    return {
        "test label outside the classes": (write_npz(tmp_path / "a.npz", x, y, 30, y_test=np.full(10, 3)),
                                           "test label 3 is outside 0..2"),
        "lengths differ": (write_npz(tmp_path / "b.npz", x, y, 30, y_train=y[:29]), "30 images but 29 labels"),
        "key missing": (tmp_path / "c.npz", "no y_test (found x_train, y_train, x_test)"),
        "not an npz": (tmp_path / "g.npz", "not a readable .npz"),
        "file missing": (tmp_path / "nosuch.npz", "no such file"),
        "floats outside [0, 1]": (write_npz(tmp_path / "e.npz", x * 2.0, y, 30), "float pixels span [0, 510]"),
        "a class without images": (write_npz(tmp_path / "f.npz", x, np.where(y == 1, 2, y), 30), "classes [1]"),
    }


def test_bad_arrays_are_one_line_naming_the_file(tmp_path, digits):
    x, y = bytes_of(digits, 40)
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x)
    (tmp_path / "g.npz").write_bytes(b"not an archive")
    for case, (path, problem) in bad_arrays(tmp_path, x, y).items():
        with pytest.raises(ConfigError) as caught:
            data_module("data=arrays", f"data.path={path}")
        message = str(caught.value)
        assert str(path) in message and problem in message and "\n" not in message, (case, message)


def test_bad_folders_are_one_line_naming_the_file(tmp_path, digits):
    x, y = bytes_of(digits, 40)
    cases = {}
    root = write_folder(tmp_path / "empty", x, y, 30)
    (root / "train" / "zero" / "extra").mkdir()   # not an image: ignored
    shutil.rmtree(root / "train" / "one"), (root / "train" / "one").mkdir()
    cases["an empty class"] = (root, root / "train" / "one", "empty class")
    root = write_folder(tmp_path / "unknown", x, y, 30)
    (root / "test" / "three").mkdir(), shutil.copy(next((root / "test" / "zero").iterdir()), root / "test" / "three")
    cases["a test class not in train"] = (root, root / "test" / "three", "not a class of the training folder")
    root = write_folder(tmp_path / "broken", x, y, 30)
    (root / "train" / "two" / "broken.png").write_bytes(b"not a png")
    cases["an unreadable image"] = (root, root / "train" / "two" / "broken.png", "not a readable image")
    root = write_folder(tmp_path / "no_test", x, y, 40)
    cases["no test folder"] = (root, root / "test", "no such folder")
    root = write_folder(tmp_path / "sizes", x, y, 30)
    Image.fromarray(x[0][:20]).save(root / "train" / "two" / "zz.png")
    cases["two image sizes"] = (root, root / "train" / "two" / "zz.png", "image of shape (20, 28)")
    for case, (root, file, problem) in cases.items():
        with pytest.raises(ConfigError) as caught:
            data_module("data=folder", f"data.root={root}")
        message = str(caught.value)
        assert str(file) in message and problem in message and "\n" not in message, (case, message)


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory) -> Path:
    """Debian's Fashion-MNIST files laid out as torchvision keeps them (<root>/FashionMNIST/raw, unpacked)."""
    if not (DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp("torchvision")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in DEBIAN_FASHION_MNIST.glob("*.gz"):
        (raw / packed.stem).write_bytes(gzip.decompress(packed.read_bytes()))
    return root


def test_torchvision_by_name_reads_fashion_mnist_from_local_files(fashion_root):
    data = data_module("data=torchvision", "data.dataset=FashionMNIST", f"data.root={fashion_root}",
                       "data.download=false")
    debian_test = _idx_split(DEBIAN_FASHION_MNIST, "t10k")              # Debian's files read by our IDX reader
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert torch.equal(data.splits["test"][0], debian_test[0]) and torch.equal(data.splits["test"][1], debian_test[1])
    assert {k: len(y) for k, (_, y) in data.splits.items()} == {"train": 54000, "val": 6000, "test": 10000}
    with pytest.raises(ConfigError, match="data.dataset='NoSuchSet' is not a torchvision data set"):
        data_module("data=torchvision", "data.dataset=NoSuchSet")


def test_failed_download_removes_what_it_created(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"file://{tmp_path}/no_mirror/"])  # fails at once
    shared = tmp_path / "shared"
    (shared / "other").mkdir(parents=True)
    (shared / "other" / "keep.txt").write_text("someone else's data")
    for root in (shared, tmp_path / "fresh"):
        with pytest.raises(DataMissing, match="MNIST not found"):
            pipeline.sources.torchvision("MNIST", str(root), download=True)
        assert not (root / "MNIST").exists()
    assert (shared / "other" / "keep.txt").read_text() == "someone else's data" and not (tmp_path / "fresh").exists()


def sweep_plan(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=list(overrides))
        return plan(cfg.sweep, group=cfg.sweep.name)


def test_the_default_takes_data_root_with_a_note(capfd):
    moved = data_module("data.root=/elsewhere")
    assert "data.root=/elsewhere is ignored: data=mnist5k is embedded" in capfd.readouterr().err
    assert torch.equal(moved.splits["test"][0], data_module().splits["test"][0])


def test_data_location_is_resolved_on_the_driver_and_not_part_of_the_id(tmp_path, digits, monkeypatch):
    x, y = bytes_of(digits, 40)
    write_folder(tmp_path / "driver" / "images", x, y, 30)
    monkeypatch.chdir(tmp_path / "driver")
    relative = sweep_plan(*GRID, 'sweep.overrides=["data=folder","data.root=images"]')
    assert relative[0].config["data"]["root"] == str(tmp_path / "driver" / "images")
    monkeypatch.chdir(tmp_path)                                     # a worker's folder: the relative path is gone
    data = data_module("data=folder", f"data.root={relative[0].config['data']['root']}")
    assert len(data.splits["test"][1]) == 10
    shutil.move(tmp_path / "driver" / "images", tmp_path / "moved")
    moved = sweep_plan(*GRID, f'sweep.overrides=["data=folder","data.root={tmp_path / "moved"}"]')
    assert [j.id for j in moved] == [j.id for j in relative]        # moved: the same jobs
    Image.fromarray(255 - x[0]).save(next((tmp_path / "moved" / "train" / "zero").iterdir()))
    changed = sweep_plan(*GRID, f'sweep.overrides=["data=folder","data.root={tmp_path / "moved"}"]')
    assert not {j.id for j in changed} & {j.id for j in relative}   # an image changed: new jobs
    named = [sweep_plan(*GRID, f'sweep.overrides=["data=mnist","data.root={root}","data.download={download}"]')
             for root, download in (("a", "true"), ("/b", "false"))]
    assert [j.id for j in named[0]] == [j.id for j in named[1]]


def test_a_sweep_fetches_each_data_set_once_on_its_driver(fashion_root, monkeypatch):
    calls = []
    real = pipeline.sources.torchvision
    monkeypatch.setattr(pipeline.sources, "torchvision", lambda *a, **k: calls.append(k) or real(*a, **k))
    jobs = sweep_plan(*GRID,
                      f'sweep.overrides=["data=torchvision","data.dataset=FashionMNIST","data.root={fashion_root}"]')
    ready = fetch_data(jobs)
    assert len(calls) == 1 and calls[0]["download"] is True                 # one download (or read) for two jobs
    assert [job.config["data"]["download"] for job in ready] == [False] * 2  # the jobs never download
    assert [job.id for job in ready] == [job.id for job in jobs]
