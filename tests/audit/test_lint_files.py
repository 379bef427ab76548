"""Files and trees: bad files never stop a run, excludes, parallel runs, atomic fixes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from optiwise.audit import lint
from optiwise.audit.lint import LintConfig, find_config, lint_file, lint_paths

BAD_ADAM = "import torch\nopt = torch.optim.Adam(g, weight_decay=0.1)\n"


def _tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _codes(report: lint.LintReport) -> list[tuple[str, str, int]]:
    return [(Path(f.path or "").name, f.code, f.line or 0) for f in report.findings]


def test_bad_files_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "a_syntax.py": "def f(:\n",
            "b_latin1.py": b"x = '\xff\xfe'\n",
            "c_ok.py": BAD_ADAM,
            "d_declared_latin1.py": b"# -*- coding: latin-1 -*-\nx = '\xe9'\n" + BAD_ADAM.encode(),
            "e_huge.py": "x = 1\n" * 300_000,
        },
    )
    (tmp_path / "f_loop.py").symlink_to(tmp_path / "g_loop.py")
    (tmp_path / "g_loop.py").symlink_to(tmp_path / "f_loop.py")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "back").symlink_to(tmp_path, target_is_directory=True)
    report = lint_paths([tmp_path, tmp_path / "missing.py"], jobs=1)
    assert _codes(report) == [
        ("a_syntax.py", "OW900", 1),
        ("b_latin1.py", "OW900", 1),
        ("c_ok.py", "OW101", 2),
        ("d_declared_latin1.py", "OW101", 4),
        ("e_huge.py", "OW900", 1),
        ("f_loop.py", "OW900", 1),
        ("g_loop.py", "OW900", 1),
        ("missing.py", "OW900", 1),
    ]
    messages = {Path(f.path or "").name: f.message for f in report.findings}
    assert "syntax error" in messages["a_syntax.py"]
    assert "not valid utf-8: byte 0xff" in messages["b_latin1.py"]
    assert "too large" in messages["e_huge.py"]
    assert "symbolic links" in messages["f_loop.py"]
    assert "no such file" in messages["missing.py"]
    assert report.files == 7


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.py"
    path.write_text(BAD_ADAM)
    real_open = open

    def deny(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", deny)
    (f,) = lint_file(path)
    assert f.code == "OW900" and "Permission denied" in f.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    path = tmp_path / "secret.py"
    path.write_text(BAD_ADAM)
    path.chmod(0)
    (f,) = lint_file(path)
    assert f.code == "OW900"


def test_internal_errors_become_file_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x.py").write_text(BAD_ADAM)

    def boom(*_: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(lint, "_check", boom)
    (f,) = lint_file(tmp_path / "x.py")
    assert f.code == "OW900" and "internal error: RuntimeError: kaboom" in f.message


def test_excludes_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.optiwise.lint]\nexclude = ["generated/", "*_pb2.py", "!keep_pb2.py"]\n'
        'ignore = ["OW401"]\n'
    )
    _tree(
        tmp_path,
        {
            "train.py": BAD_ADAM,
            "generated/big.py": BAD_ADAM,
            "proto/msg_pb2.py": BAD_ADAM,
            "proto/keep_pb2.py": BAD_ADAM,
            ".venv/lib.py": BAD_ADAM,
            "notes.txt": BAD_ADAM,
        },
    )
    config = find_config(tmp_path / "proto")
    assert config.root == tmp_path and config.ignore == ("OW401",)
    report = lint_paths([tmp_path], config=config)
    assert sorted(Path(f.path or "").name for f in report.findings) == ["keep_pb2.py", "train.py"]
    # a file named explicitly (as pre-commit does) is excluded too
    assert lint_paths([tmp_path / "proto" / "msg_pb2.py"], config=config).findings == []


@pytest.mark.parametrize(
    "table, match",
    [
        ("exclude = 3", "exclude must be a list of strings"),
        ("colour = 1", "unknown key"),
        ("select = ['OW8']", "Unknown finding code 'OW8'"),
        ("max-file-size = 0", "max-file-size must be a positive"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, table: str, match: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.optiwise.lint]\n{table}\n")
    with pytest.raises(ValueError, match=match):
        find_config(tmp_path)


def test_config_defaults_without_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_config(tmp_path / "nope.py").exclude == ()
    with pytest.raises(ValueError, match="invalid TOML"):
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "pyproject.toml").write_text("[tool\n")
        find_config(tmp_path / "sub")


def test_max_file_size_setting(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text(BAD_ADAM)
    (f,) = lint_file(tmp_path / "x.py", config=LintConfig(max_file_size=10))
    assert f.code == "OW900" and "too large" in f.message


def test_parallel_equals_serial(tmp_path: Path) -> None:
    from tests.audit.corpus import CORRECT, FLAWED

    for case in [*FLAWED, *CORRECT]:
        (tmp_path / f"{case.name}.py").write_text(case.source)
    serial = lint_paths([tmp_path], jobs=1)
    parallel = lint_paths([tmp_path], jobs=2)
    assert serial.findings == parallel.findings and serial.files == len(FLAWED) + len(CORRECT)
    expected = sum(len(c.expected) for c in FLAWED)
    assert len(serial.findings) == expected


def test_fix_writes_atomically_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(BAD_ADAM)
    path.chmod(0o750)
    report = lint_paths([path], fix=True)
    assert path.read_text() == BAD_ADAM.replace("Adam(", "AdamW(")
    assert report.findings == [] and [f.code for f in report.fixed] == ["OW101"]
    assert report.changed_files == [str(path)] and (path.stat().st_mode & 0o777) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.py"]  # no temp file left
    again = lint_paths([path], fix=True)
    assert again.fixed == [] and again.changed_files == []


def test_diff_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(BAD_ADAM)
    report = lint_paths([path], diff=True)
    assert path.read_text() == BAD_ADAM
    (d,) = report.diffs
    assert "-opt = torch.optim.Adam(g" in d and "+opt = torch.optim.AdamW(g" in d


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no paths given"):
        lint_paths([])
    with pytest.raises(ValueError, match="Invalid jobs: 0"):
        lint_paths(["x.py"], jobs=0)
