"""Loading CIFAR-10: generated class folders, the shared real copy, the cache, and bad data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training.data as data_mod
from training.config import DataConfig
from training.data import load_data
from training.errors import DataError

CLASSES = ["cat", "dog", "frog"]


def make_tree(root: Path, per_class: int = 6, test_per_class: int = 2, fmt: str = "png") -> Path:
    """A tiny class-folder tree whose pixel values encode (split, class, index)."""
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.full((32, 32, 3), 10 * c + i, dtype=np.uint8)
                Image.fromarray(arr).save(root / split / name / f"{i:03d}.{fmt}")
    return root


def cfg(root: Path, cache: Path, **kw) -> DataConfig:
    return DataConfig(root=str(root), cache_dir=str(cache), **{"download": False, **kw})


def test_class_folder_tree_loads_stratified(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    d = load_data(cfg(root, tmp_path / "cache", val_size=3))
    assert d.classes == CLASSES
    assert (len(d.train), len(d.val), len(d.test)) == (15, 3, 6)
    assert sorted(d.val.y.tolist()) == [0, 1, 2]  # stratified: one per class
    assert d.train.x.dtype.is_floating_point is False and d.train.x.shape[1:] == (3, 32, 32)
    # labels match pixel content (10·class + index): nothing shuffled out of step
    assert all(int(x[0, 0, 0]) // 10 == int(y) for x, y in zip(d.train.x, d.train.y))
    assert not set(d.train.x[:, 0, 0, 0].tolist()) & set(d.val.x[:, 0, 0, 0].tolist())  # disjoint


def test_train_size_takes_a_shuffled_not_class_ordered_subset(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", per_class=10)
    d = load_data(cfg(root, tmp_path / "cache", val_size=3, train_size=9))
    assert len(d.train) == 9 and len(set(d.train.y.tolist())) >= 2
    again = load_data(cfg(root, tmp_path / "cache", val_size=3, train_size=9))
    assert d.train.x.equal(again.train.x)  # a fixed order


def test_cache_is_reused_and_invalidated_when_the_source_changes(tmp_path: Path, monkeypatch) -> None:
    root = make_tree(tmp_path / "tree")
    decoded = []
    real = data_mod._decode_folders
    monkeypatch.setattr(data_mod, "_decode_folders", lambda r: decoded.append(r) or real(r))
    c = cfg(root, tmp_path / "cache", val_size=3)
    first = load_data(c)
    load_data(c)
    assert len(decoded) == 1  # second load served from the cache
    img = root / "test" / "cat" / "000.png"
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(img)
    os.utime(img, ns=(1, 1))  # a rewritten file, even with an old mtime, differs in mtime from the cached one
    changed = load_data(c)
    assert len(decoded) == 2
    assert int(changed.test.x[0, 0, 0, 0]) == 200 != int(first.test.x[0, 0, 0, 0])


def test_hidden_entries_and_other_files_are_neither_classes_nor_images(tmp_path: Path) -> None:
    """As in torchvision's ImageFolder. Jupyter's .ipynb_checkpoints/ was read as class 0 and a Mac's
    .DS_Store as an unreadable image; a README beside the images stopped the load too."""
    root = make_tree(tmp_path / "tree")
    expected = load_data(cfg(root, tmp_path / "cache", val_size=3))
    for split in ("train", "test"):
        (root / split / ".ipynb_checkpoints").mkdir()
        Image.new("RGB", (32, 32)).save(root / split / ".ipynb_checkpoints" / "000.png")
        (root / split / "dog" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (root / split / "cat" / "README.txt").write_text("cats")
        (root / split / "LICENSE").write_text("")
    d = load_data(cfg(root, tmp_path / "other-cache", val_size=3))
    assert d.classes == CLASSES and (len(d.train), len(d.val), len(d.test)) == (15, 3, 6)
    assert d.train.x.equal(expected.train.x) and d.test.y.equal(expected.test.y)
    (root / "train" / "cat" / "006.JPEG").write_bytes((root / "train" / "cat" / "000.png").read_bytes())  # PIL reads by content
    assert len(load_data(cfg(root, tmp_path / "other-cache", val_size=3)).train) == 16  # upper-case suffixes count


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: [p.unlink() for p in (r / "train" / "dog").iterdir()], "holds no image"),
        # sklearn's stratified split raised a ValueError traceback in every trial
        (lambda r: [p.unlink() for p in sorted((r / "train" / "dog").iterdir())[1:]], "dog holds one image: the class-strat"),
        (lambda r: (r / "train" / "dog" / "000.png").write_bytes(b"not an image"), "cannot read image"),
        (lambda r: Image.new("RGB", (16, 16)).save(r / "train" / "dog" / "000.png"), "must be 32×32"),
        (lambda r: (r / "test" / "dog").rename(r / "test" / "wolf"), "class folders differ"),
    ],
    ids=["empty-class", "one-image-class", "unreadable", "wrong-size", "class-mismatch"],
)
def test_bad_trees_raise_one_line(tmp_path: Path, breakage, message: str) -> None:
    root = make_tree(tmp_path / "tree")
    breakage(root)
    with pytest.raises(DataError, match=message) as e:
        load_data(cfg(root, tmp_path / "cache", val_size=3))
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_a_cache_dir_that_cannot_be_written_is_one_line_before_decoding(tmp_path: Path, monkeypatch) -> None:
    """A data.cache_dir under a file was OSError's traceback, after every image had been decoded."""
    (tmp_path / "file").touch()
    monkeypatch.setattr(data_mod, "_decode_folders", lambda root: pytest.fail("decoded before the cache was checked"))
    with pytest.raises(DataError, match=r"cannot write the decoded images to .*file/cache \(Not a directory\); "
                       r"point data.cache_dir \(or SWEEPS_CACHE_DIR\) at a folder that can hold them"):
        load_data(cfg(make_tree(tmp_path / "tree"), tmp_path / "file" / "cache", val_size=3))


def test_a_full_disk_leaves_no_half_written_cache(tmp_path: Path) -> None:
    """A cache folder too small for the images (a real 16 KiB tmpfs): traceback and a half-written
    `*.tmp` folder before; one line, and nothing left behind, now."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(DataError, match=r"cannot write the decoded images to .*small \(.*; 0.1 MB needed, 0.0 MB "
                           r"free there\); point data.cache_dir"):
            load_data(cfg(make_tree(tmp_path / "tree"), small, val_size=3))
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_missing_dataset_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="no CIFAR-10 at .*CIFAR10_ROOT"):
        load_data(cfg(tmp_path / "nothing", tmp_path / "cache", val_size=3))
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # a port nothing listens on
    with pytest.raises(DataError, match=r"\(class folders\), and torchvision's download failed \(URLError: .*refused.*CIFAR10_ROOT"):
        load_data(cfg(tmp_path / "nothing", tmp_path / "cache", val_size=3, download=True))
    assert not (tmp_path / "nothing").exists()  # nothing half-downloaded left behind, not even the folder it made


@pytest.mark.parametrize("inside", ["train", "test", "cifar-10-batches-py"])
def test_a_folder_inside_a_copy_names_the_copy(tmp_path: Path, inside: str) -> None:
    """data.root at a copy's train/ (or torchvision's batch folder): torchvision downloaded a second copy into it,
    where, in a class-folder split, it then read as an 11th class."""
    from torchvision.datasets import CIFAR10

    copy = make_tree(tmp_path / "cifar10")
    if inside == "cifar-10-batches-py":
        (copy / inside).mkdir()
        (copy / inside / "data_batch_1").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_data(cfg(copy / inside, tmp_path / "cache", val_size=3, download=True))
    part = "torchvision's cifar-10-batches-py/" if inside == "cifar-10-batches-py" else f"the {inside}/ split"
    assert str(e.value) == f"{copy / inside} is {part} of a CIFAR-10 copy: point data.root or CIFAR10_ROOT at {copy}"
    assert not (copy / inside / CIFAR10.base_folder).exists()  # no download into it


@pytest.mark.parametrize("val_size, train_size", [(18, None), (2, None), (3, 100)])
def test_split_sizes_that_cannot_fit(tmp_path: Path, val_size: int, train_size: int | None) -> None:
    root = make_tree(tmp_path / "tree")
    with pytest.raises(DataError, match="data.(val|train)_size"):
        load_data(cfg(root, tmp_path / "cache", val_size=val_size, train_size=train_size))


def test_torchvision_format_is_read(tmp_path: Path) -> None:
    """A real `cifar-10-batches-py` folder, written in torchvision's pickle format from real pixels."""
    import pickle

    tv = tmp_path / "tv" / data_mod.TORCHVISION_DIR
    tv.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for name in names:
        labels = [i % 10 for i in range(20)]
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": labels}
        (tv / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (tv / "batches.meta").write_bytes(pickle.dumps(meta))
    d = load_data(cfg(tmp_path / "tv", tmp_path / "cache", val_size=10))
    assert d.classes == meta["label_names"]
    assert (len(d.train), len(d.val), len(d.test)) == (90, 10, 20)


def test_shared_cifar10_copy(cifar_root: Path, cache_dir: Path) -> None:
    d = load_data(DataConfig(root=str(cifar_root), cache_dir=str(cache_dir), val_size=5000))
    assert (len(d.train), len(d.val), len(d.test)) == (45000, 5000, 10000)
    assert d.classes[:3] == ["airplane", "automobile", "bird"]
    assert np.bincount(d.val.y.numpy()).tolist() == [500] * 10
    assert np.bincount(d.test.y.numpy()).tolist() == [1000] * 10


def test_decoding_in_a_log_is_one_line_per_split_on_stderr(tmp_path: Path) -> None:
    """rich's bar went to stdout and, not on a terminal, left a blank line there per split; a log now reads
    one line per split on stderr, and stdout holds only the results."""
    from tests.conftest import run_cli

    root = make_tree(tmp_path / "tree", per_class=10)
    p = run_cli("training", "fit", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", "data.val_size=3",
                "train.epochs=1", "train.batch_size=8", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"run directory: {tmp_path / 'run'}\ncompleted 1 epoch;"), p.stdout
    said = p.stderr.splitlines()
    assert said[:2] == [f"decoding 30 images of {root / 'train'} (once: they are cached)",
                        f"decoding 6 images of {root / 'test'} (once: they are cached)"], said
