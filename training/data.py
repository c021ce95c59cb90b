"""CIFAR-10 as uint8 tensors on the training device, decoded once and cached.

Two sources are read: torchvision's `cifar-10-batches-py` (downloaded into `data.root` when absent
and allowed) and a class-folder tree `train/<class>/*`, `test/<class>/*` of any image format PIL
reads. Either is decoded once into a uint8 cache file keyed by the source's file list, sizes and
mtimes, so later trials load in a fraction of a second and a changed source is never served stale.
Batches are normalized and augmented whole, on the device (airbench's data path).
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import DataConfig
from training.errors import DataError, describe

TORCHVISION_DIR = "cifar-10-batches-py"
IMAGE_SIZE = 32
SUBSET_SEED = 0  # the fixed shuffled order behind train_size and the validation split
# torchvision's ImageFolder reads these (its IMG_EXTENSIONS; importing it takes a second); other files
# (Thumbs.db, a README) and hidden entries (.DS_Store, .ipynb_checkpoints/) are not images or classes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Split:
    """Images (uint8, N×3×32×32) and labels (int64, N) of one split, on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: list[str]


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """Load the source at `cfg.root` (via the cache), split it and move it to `device`."""
    images, labels, test_images, test_labels, classes = _load_cached(cfg)
    train_idx, val_idx = _split_indices(labels, cfg.train_size, cfg.val_size)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.array(x)).to(device), torch.from_numpy(np.array(y)).long().to(device))

    return Dataset(
        train=split(images[train_idx], labels[train_idx]),
        val=split(images[val_idx], labels[val_idx]),
        test=split(test_images, test_labels),
        classes=classes,
    )


def check_data(cfg: DataConfig) -> None:
    """Raise the DataError that `load_data` would raise in every trial (no source, an unreadable image, a
    split that does not fit the images), without loading the images: a sweep checks this before it starts.
    The first call decodes the source into the cache, which the trials then read."""
    _, labels, *_ = _load_cached(cfg)
    _split_indices(labels, cfg.train_size, cfg.val_size)


def _split_indices(labels: np.ndarray, train_size: int | None, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-stratified validation split, then the first `train_size` of a fixed shuffled order."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    n_classes = len(np.unique(labels))
    if not n_classes <= val_size < n - n_classes:
        raise DataError(
            f"data.val_size={val_size} does not fit the {n} training images: "
            f"use at least {n_classes} (one per class) and fewer than {n - n_classes}"
        )
    order = np.random.default_rng(SUBSET_SEED).permutation(n)
    rest, val = train_test_split(order, test_size=val_size, stratify=labels[order], random_state=SUBSET_SEED)
    rest = order[np.isin(order, rest)]  # back to the fixed shuffled order
    if train_size is not None:
        if train_size > len(rest):
            raise DataError(
                f"data.train_size={train_size} exceeds the {len(rest)} images left after the "
                f"validation split (data.val_size={val_size}); lower one of them"
            )
        rest = rest[:train_size]
    return rest, np.sort(val)


def batches(
    split: Split,
    batch_size: int,
    cfg: DataConfig,
    generator: torch.Generator | None = None,
    augment: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalized float batches; shuffled (and augmented) when a generator is given."""
    n = len(split)
    device = split.x.device
    order = torch.randperm(n, generator=generator).to(device) if generator is not None else None
    mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
        x = split.x[idx].float().div_(255)
        if augment:
            x = random_crop_flip(x, generator)
        yield x.sub_(mean).div_(std), split.y[idx]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding `pad` and random horizontal flip, per image, on the whole batch."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = torch.rand(b, generator=generator).to(x.device) < 0.5
    rows = dy[:, None] + torch.arange(h, device=x.device)  # b×h
    cols = dx[:, None] + torch.arange(w, device=x.device)  # b×w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()  # b×h×w×c → b×c×h×w


# ---------------------------------------------------------------- sources and cache

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]
CACHE_ARRAYS = ("x", "y", "test_x", "test_y")


def _load_cached(cfg: DataConfig) -> Arrays:
    root = Path(cfg.root).expanduser().resolve()
    kind, files = find_source(root, cfg.download)
    cache = Path(cfg.cache_dir).expanduser() / f"cifar10-{kind}-{_fingerprint(root, files)}"
    if not cache.exists():
        try:  # before the minutes of decoding
            cache.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _unwritable(cache.parent, e) from None
        _write_cache(cache, _decode_torchvision(root) if kind == "torchvision" else _decode_folders(root))
    # memory-mapped: a subset only reads the images it uses
    x, y, tx, ty = (np.load(cache / f"{name}.npy", mmap_mode="r") for name in CACHE_ARRAYS)
    return x, y, tx, ty, (cache / "classes.txt").read_text().split("\n")


def _write_cache(cache: Path, arrays: Arrays) -> None:
    """Write the decoded arrays to `cache` whole or not at all: into a temporary folder, renamed when complete
    and removed on any error or Ctrl-C. A full disk or a cache_dir that cannot be written is a DataError."""
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for name, array in zip(CACHE_ARRAYS, arrays[:4]):
            np.save(tmp / f"{name}.npy", array)
        (tmp / "classes.txt").write_text("\n".join(arrays[4]))
        os.replace(tmp, cache)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and cache.is_dir():  # another process cached the same source first
            return
        if isinstance(e, OSError):
            raise _unwritable(cache.parent, e, need=sum(a.nbytes for a in arrays[:4])) from None
        raise


def _unwritable(folder: Path, e: OSError, need: int = 0) -> DataError:
    """The DataError for a cache folder that cannot take the decoded images (`need` bytes)."""
    free = shutil.disk_usage(folder).free if folder.is_dir() else 0
    room = f"; {need / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free there" if e.errno == errno.ENOSPC or free < need else ""
    return DataError(f"cannot write the decoded images to {folder} ({e.strerror or e}{room}); point data.cache_dir "
                     "(or SWEEPS_CACHE_DIR) at a folder that can hold them")


def find_source(root: Path, download: bool) -> tuple[str, list[os.DirEntry[str]]]:
    """Detect the source at `root`: ('folders', files) or ('torchvision', batch files)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "folders", [f for split in ("train", "test") for c in _class_dirs(root / split) for f in _images(c)]
    if part := _part_of_a_copy(root):  # torchvision would download another copy into it (into a split, too)
        raise DataError(f"{root} is {part} of a CIFAR-10 copy: point data.root or CIFAR10_ROOT at {root.parent}")
    tv = root / TORCHVISION_DIR
    failed = _download(root) if not tv.is_dir() and download else None
    if tv.is_dir():
        return "torchvision", _entries(tv, "files")
    raise DataError(
        f"no CIFAR-10 at {root}: looked for {TORCHVISION_DIR}/ (torchvision) and train/<class>/, test/<class>/ "
        "(class folders)" + (f", and torchvision's download failed ({failed})" if failed else "")
        + "; point data.root or the CIFAR10_ROOT environment variable at a copy"
    )


def _part_of_a_copy(root: Path) -> str | None:
    """What `root` is when it is a folder inside a CIFAR-10 copy (torchvision's batch folder, a split), else None."""
    if (root / "data_batch_1").is_file():
        return f"torchvision's {TORCHVISION_DIR}/"
    if root.name in ("train", "test") and (root.parent / "train").is_dir() and (root.parent / "test").is_dir():
        return f"the {root.name}/ split"
    return None


def _download(root: Path) -> str | None:
    """torchvision's download into `root`; why it failed (no network, ...), or None."""
    from torchvision.datasets import CIFAR10

    existed = root.exists()
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:
        if (root / TORCHVISION_DIR).is_dir():
            raise DataError(f"download of CIFAR-10 into {root} failed halfway ({e}); remove it and retry") from None
        if not existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # no empty ./data left behind where the download made it
        return describe(e)
    return None


def _entries(folder: Path, kind: str) -> list[os.DirEntry[str]]:
    """The files or the folders in `folder` that are not hidden, sorted by name (os.scandir: one stat each)."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    return [e for e in entries if not e.name.startswith(".") and (e.is_file() if kind == "files" else e.is_dir())]


def _class_dirs(split: Path) -> list[Path]:
    return [Path(e.path) for e in _entries(split, "dirs")]


def _images(class_dir: Path) -> list[os.DirEntry[str]]:
    return [e for e in _entries(class_dir, "files") if e.name.lower().endswith(IMAGE_SUFFIXES)]


def _fingerprint(root: Path, files: list[os.DirEntry[str]]) -> str:
    """Hash of every file's path, size and mtime: any added, removed or rewritten file changes it."""
    h = hashlib.sha1(str(root).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_torchvision(root: Path) -> Arrays:
    """Read torchvision's `cifar-10-batches-py` (the python pickles CIFAR-10 is distributed as)."""
    tv = root / TORCHVISION_DIR

    def unpickle(name: str) -> dict[str, Any]:
        try:
            with open(tv / name, "rb") as f:
                raw = pickle.load(f, encoding="latin1")
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            raise DataError(f"cannot read {tv / name}: {e}; remove {tv} to download it again") from None
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}

    def split(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batches = [unpickle(n) for n in names]
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b.get("labels", b.get("fine_labels")), dtype=np.int64) for b in batches])
        return x, y

    x, y = split([f"data_batch_{i}" for i in range(1, 6)])
    tx, ty = split(["test_batch"])
    return x, y, tx, ty, list(unpickle("batches.meta")["label_names"])


def _decode_folders(root: Path) -> Arrays:
    classes = [p.name for p in _class_dirs(root / "train")]
    test_classes = [p.name for p in _class_dirs(root / "test")]
    if not classes:
        raise DataError(f"{root / 'train'} has no class folders: expected train/<class>/<image files>")
    if classes != test_classes:
        raise DataError(f"class folders differ between {root / 'train'} ({classes}) and {root / 'test'} ({test_classes})")
    x, y = _decode_split(root / "train", classes)
    if (counts := np.bincount(y, minlength=len(classes))).min() < 2:
        raise DataError(f"class folder {root / 'train' / classes[counts.argmin()]} holds one image: the class-stratified "
                        "validation split needs at least 2 per class")
    tx, ty = _decode_split(root / "test", classes)
    return x, y, tx, ty, classes


def _decode_split(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError
    from rich.console import Console
    from rich.progress import track

    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = [Path(e.path) for e in _images(folder / name)]
        if not found:
            raise DataError(f"class folder {folder / name} holds no image ({', '.join(IMAGE_SUFFIXES)}): every class "
                            "needs at least one")
        files += [(p, label) for p in found]
    x = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    err = Console(stderr=True, soft_wrap=True)  # with the other progress output, off stdout; in a log one line, not a bar
    if not err.is_terminal:
        err.print(f"decoding {len(files)} images of {folder} (once: they are cached)", highlight=False, markup=False)
    bar = track(files, description=f"decoding {folder.name}/", transient=True, console=err, disable=not err.is_terminal)
    for i, (path, _) in enumerate(bar):
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise DataError(f"image {path} is {arr.shape[1]}×{arr.shape[0]}; CIFAR-10 images must be 32×32")
        x[i] = arr.transpose(2, 0, 1)
    return x, np.array([label for _, label in files], dtype=np.int64)
