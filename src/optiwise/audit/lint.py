"""Static checks of training scripts: ``optiwise lint``.

:func:`lint_source` checks one module's text; :func:`lint_paths` checks files and folders
(in parallel over files), applies fixes when asked, and never stops on a bad file: a file
that cannot be read or parsed is reported as ``OW900`` and the run goes on.

Names are resolved through the file's imports (``import torch.optim as optim``,
``from torch.optim import Adam as A``, ``torch.optim.AdamW``, ``optiwise.create_optimizer``);
values count when the file fixes them (literals, constants, argparse defaults, config dicts
and classes, config files beside the script; see docs/lint.md), so nothing is reported about
what cannot be known from the source.  A finding is silenced by a
``# optiwise: ignore[CODE]`` comment on its line or on the first line of its statement.
"""

from __future__ import annotations

import ast
import difflib
import io
import os
import re
import stat
import sys
import tokenize
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optiwise.audit._analysis import Analyzer, Raw
from optiwise.audit._edits import Edit
from optiwise.audit._output import format_json, format_sarif, format_text
from optiwise.audit.findings import CODES, Finding, Severity, make_finding, sort_findings

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "LINT_CODES",
    "LintConfig",
    "LintReport",
    "find_config",
    "format_json",
    "format_sarif",
    "format_text",
    "lint_file",
    "lint_paths",
    "lint_source",
    "resolve_codes",
]

LINT_CODES = frozenset(
    {
        "OW101",
        "OW102",
        "OW106",
        "OW201",
        "OW301",
        "OW303",
        "OW304",
        "OW305",
        "OW307",
        "OW308",
        "OW309",
        "OW401",
        "OW501",
        "OW502",
        "OW503",
        "OW504",
        "OW505",
        "OW506",
        "OW507",
        "OW508",
        "OW601",
        "OW701",
        "OW702",
        "OW703",
        "OW900",
    }
)
"""The codes the linter reports (the others are the runtime audit's only)."""

DEFAULT_MAX_FILE_SIZE = 1_000_000
"""Files larger than this many bytes are reported as OW900 instead of parsed (generated
code, data dumped as Python)."""

# Folders never entered when walking a directory (a file named explicitly is still linted).
_SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "venv", "env", "build", "dist", "site-packages"}
)
# Severities the linter reports for rules where it sees less than the runtime audit.
_LINT_SEVERITY = {"OW401": Severity.INFO}
_CONFIG_KEYS = ("exclude", "select", "ignore", "max-file-size")
_IGNORE_RE = re.compile(r"#\s*optiwise:\s*ignore(?:\[([^\]]*)\])?", re.IGNORECASE)
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LintConfig:
    """Settings of a lint run, usually from ``[tool.optiwise.lint]`` in pyproject.toml.

    Attributes
    ----------
    select:
        Codes or code prefixes to report (``None``: all).
    ignore:
        Codes or code prefixes never reported.
    exclude:
        gitignore-style patterns, relative to ``root``, of files and folders to skip.
    root:
        Folder the ``exclude`` patterns are relative to (the pyproject.toml's folder).
    max_file_size:
        Larger files are reported as ``OW900`` instead of parsed.
    """

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    root: Path | None = None
    max_file_size: int = DEFAULT_MAX_FILE_SIZE


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML ({exc}); fix the file") from None


def _str_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(
            f"{path}: [tool.optiwise.lint] {key} must be a list of strings, got {value!r}"
        )
    return tuple(value)


def find_config(start: str | os.PathLike[str] | None = None) -> LintConfig:
    """The settings in the nearest pyproject.toml with a ``[tool.optiwise.lint]`` table, from
    ``start`` (default: the current folder) upwards; defaults when there is none.

    Raises a ValueError naming the file and key when the table is malformed.
    """
    here = Path(start if start is not None else os.getcwd()).absolute()
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        table = _load_toml(candidate).get("tool", {}).get("optiwise", {}).get("lint")
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ValueError(f"{candidate}: [tool.optiwise.lint] must be a table")
        unknown = sorted(set(table) - set(_CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"{candidate}: unknown key(s) {', '.join(unknown)} in [tool.optiwise.lint]; "
                f"known: {', '.join(_CONFIG_KEYS)}"
            )
        size = table.get("max-file-size", DEFAULT_MAX_FILE_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(
                f"{candidate}: [tool.optiwise.lint] max-file-size must be a positive number "
                f"of bytes, got {size!r}"
            )
        select = _str_list(table["select"], "select", candidate) if "select" in table else None
        config = LintConfig(
            select=select,
            ignore=_str_list(table.get("ignore", []), "ignore", candidate),
            exclude=_str_list(table.get("exclude", []), "exclude", candidate),
            root=folder,
            max_file_size=size,
        )
        resolve_codes(config.select, config.ignore)  # validate now, naming the file
        return config
    return LintConfig()


def resolve_codes(
    select: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> frozenset[str]:
    """The codes a run reports: those matching a ``select`` code or prefix (all when
    ``None``) and no ``ignore`` code or prefix.

    Raises a ValueError for a code or prefix that matches no known code.
    """

    def expand(items: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for item in items:
            key = item.strip().upper()
            if not key:
                continue
            matched = {c for c in CODES if c.startswith(key)}
            if not matched:
                raise ValueError(
                    f"Unknown finding code {item!r}; known: {', '.join(sorted(CODES))} "
                    "(a prefix such as OW1 selects a group)"
                )
            out |= matched
        return out

    chosen = set(CODES) if select is None else expand(select)
    return frozenset(chosen - expand(ignore))


# ------------------------------------------------------------------------------------------
# One module
# ------------------------------------------------------------------------------------------


@dataclass
class _Checked:
    finding: Finding
    edits: tuple[Edit, ...]


def _suppressions(source: str) -> dict[int, set[str] | None]:
    """Line -> codes silenced there (``None``: every code)."""
    out: dict[int, set[str] | None] = {}
    if "optiwise" not in source:
        return out

    def add(line: int, text: str) -> None:
        for m in _IGNORE_RE.finditer(text):
            if m.group(1) is None:
                out[line] = None
            elif out.get(line, set()) is not None:
                codes = {c.strip().upper() for c in m.group(1).split(",") if c.strip()}
                out.setdefault(line, set()).update(codes)  # type: ignore[union-attr]

    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                add(tok.start[0], tok.string)
    except (tokenize.TokenError, SyntaxError):  # pragma: no cover - source already parsed
        for i, line in enumerate(_NEWLINE_RE.split(source), start=1):
            add(i, line)
    return out


def _suppressed(sup: dict[int, set[str] | None], lines: Iterable[int], code: str) -> bool:
    for line in lines:
        if line in sup:
            codes = sup[line]
            if codes is None or code in codes:
                return True
    return False


class _Positions:
    """Character columns from ast's UTF-8 byte offsets."""

    def __init__(self, source: str) -> None:
        self.lines = _NEWLINE_RE.split(source)

    def col(self, line: int, byte_col: int) -> int:
        if 1 <= line <= len(self.lines):
            text = self.lines[line - 1]
            if not text.isascii():
                return len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))
        return byte_col


def _statement_line(analyzer: Analyzer, node: ast.AST) -> int:
    cur: ast.AST | None = node
    while cur is not None and not isinstance(cur, ast.stmt):
        cur = analyzer.r.parents.get(cur)
    return getattr(cur if cur is not None else node, "lineno", 1)


def _to_finding(raw: Raw, path: str, pos: _Positions) -> Finding:
    line = getattr(raw.node, "lineno", 1)
    col = pos.col(line, getattr(raw.node, "col_offset", 0)) + 1
    kwargs: dict[str, Any] = {"path": path, "line": line, "col": col, "data": dict(raw.data)}
    if raw.fix_text:
        kwargs["fix"] = raw.fix_text
    if raw.fix_kind and raw.edits:
        kwargs["fixable"] = raw.fix_kind
    return make_finding(raw.code, raw.message, severity=_LINT_SEVERITY.get(raw.code), **kwargs)


def _check(source: str, path: str, codes: frozenset[str]) -> list[_Checked]:
    """Findings (with their edits) of ``source``; a syntax error is one OW900 finding."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [_Checked(_syntax_error(exc, path), ())] if "OW900" in codes else []
    except (RecursionError, MemoryError, ValueError) as exc:
        return (
            [_Checked(_file_error(path, f"cannot be parsed: {exc}"), ())]
            if ("OW900" in codes)
            else []
        )
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else None
    analyzer = Analyzer(tree, base_dir=folder)
    raws = analyzer.run()
    pos = _Positions(source)
    sup = _suppressions(source)
    out: list[_Checked] = []
    seen: set[tuple[str, int, int]] = set()
    for raw in raws:
        if raw.code not in codes:
            continue
        f = _to_finding(raw, path, pos)
        assert f.line is not None and f.col is not None
        if (raw.code, f.line, f.col) in seen:
            continue
        seen.add((raw.code, f.line, f.col))
        if _suppressed(sup, (f.line, _statement_line(analyzer, raw.node)), raw.code):
            continue
        out.append(_Checked(f, raw.edits if f.fixable else ()))
    out.sort(key=lambda c: (c.finding.line or 0, c.finding.col or 0, c.finding.code))
    return out


def _file_error(path: str, message: str, line: int = 1, col: int = 1) -> Finding:
    return make_finding("OW900", f"file could not be checked: {message}").located(path, line, col)


def _syntax_error(exc: SyntaxError, path: str) -> Finding:
    return _file_error(path, f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1)


def lint_source(
    source: str,
    path: str = "<string>",
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> list[Finding]:
    """Findings in the Python ``source`` (sorted by line and column, both 1-based).

    Parameters
    ----------
    source:
        The module's text.
    path:
        Shown in the findings.
    select, ignore:
        Codes or prefixes to report / to leave out (see :func:`resolve_codes`).
    """
    return [c.finding for c in _check(source, path, resolve_codes(select, ignore))]


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


class _FileError(Exception):
    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def _read(path: Path, max_size: int) -> tuple[str, str]:
    """The text of ``path`` and its encoding; raises _FileError saying what is wrong."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _FileError("not a regular file")
        if st.st_size > max_size:
            raise _FileError(
                f"file is too large ({st.st_size} bytes > {max_size}); exclude it or raise "
                "max-file-size in [tool.optiwise.lint]"
            )
        with open(path, "rb") as fh:
            data = fh.read(max_size + 1)
    except OSError as exc:
        raise _FileError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_size:
        raise _FileError(f"file is too large (> {max_size} bytes)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:  # undecodable first lines, or a bad coding cookie
        encoding, bad_cookie = "utf-8", exc.msg
        if "encoding" in bad_cookie and "missing" not in bad_cookie:
            raise _FileError(f"bad encoding declaration: {bad_cookie}") from None
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _FileError(
            f"not valid {encoding}: byte {data[exc.start]:#04x} at offset {exc.start}", line
        ) from None
    except LookupError:  # pragma: no cover - detect_encoding validates the name
        raise _FileError(f"unknown encoding {encoding!r}") from None


def lint_file(path: str | os.PathLike[str], *, config: LintConfig | None = None) -> list[Finding]:
    """Findings in one file; a file that cannot be read or parsed gives one OW900."""
    config = config or LintConfig()
    task = _Task(str(path), str(path), resolve_codes(config.select, config.ignore), config)
    return _process(task).findings


@dataclass(frozen=True)
class _Task:
    path: str
    display: str
    codes: frozenset[str]
    config: LintConfig
    fix: bool = False
    unsafe: bool = False
    diff: bool = False


@dataclass
class _FileResult:
    display: str
    findings: list[Finding]
    fixed: list[Finding] = field(default_factory=list)
    diff: str = ""
    changed: bool = False


def _process(task: _Task) -> _FileResult:
    """Lint (and fix) one file; never raises."""
    try:
        return _process_unsafe(task)
    except _FileError as exc:
        findings = [_file_error(task.display, str(exc), exc.line)]
    except Exception as exc:  # a bug or an exotic file must not stop the run
        findings = [_file_error(task.display, f"internal error: {type(exc).__name__}: {exc}")]
    return _FileResult(task.display, [f for f in findings if f.code in task.codes])


def _diff_name(side: str, path: str) -> str:
    return path if os.path.isabs(path) else f"{side}/{path}"


def _process_unsafe(task: _Task) -> _FileResult:
    text, encoding = _read(Path(task.path), task.config.max_file_size)
    if not (task.fix or task.diff):
        return _FileResult(
            task.display, [c.finding for c in _check(text, task.display, task.codes)]
        )
    from optiwise.audit.fixes import fix_source_codes

    result = fix_source_codes(text, task.display, task.codes, unsafe=task.unsafe)
    out = _FileResult(task.display, result.remaining, result.fixed)
    if result.source == text:
        return out
    out.changed = True
    if task.diff:
        out.diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                result.source.splitlines(keepends=True),
                fromfile=_diff_name("a", task.display),
                tofile=_diff_name("b", task.display),
            )
        )
        if out.diff and not out.diff.endswith("\n"):
            out.diff += "\n\\ No newline at end of file\n"
    else:
        from optiwise._io import atomic_path

        target = Path(task.path).resolve()
        mode = os.stat(target).st_mode
        with atomic_path(target, mkdir=False) as tmp:
            with open(tmp, "w", encoding=encoding, newline="") as fh:
                fh.write(result.source)
            os.chmod(tmp, stat.S_IMODE(mode))
    return out


# ------------------------------------------------------------------------------------------
# Trees
# ------------------------------------------------------------------------------------------


class _Excluder:
    def __init__(self, config: LintConfig) -> None:
        self.root = config.root
        self.spec = None
        if config.exclude:
            import pathspec

            self.spec = pathspec.GitIgnoreSpec.from_lines(config.exclude)

    def excluded(self, path: Path, is_dir: bool) -> bool:
        if self.spec is None or self.root is None:
            return False
        rel = os.path.relpath(path.absolute(), self.root)
        if rel == "." or rel.startswith(".."):
            return False
        rel = rel.replace(os.sep, "/")
        return bool(self.spec.match_file(rel + "/" if is_dir else rel))


def _discover(
    paths: Sequence[str | os.PathLike[str]], config: LintConfig
) -> tuple[list[tuple[str, str]], list[Finding]]:
    """(path, display) of every file to lint, and OW900 for paths that do not exist."""
    excluder = _Excluder(config)
    files: list[tuple[str, str]] = []
    errors: list[Finding] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.normpath(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            files.append((path, os.path.normpath(path)))

    for given in paths:
        p = Path(given)
        if p.is_dir():
            if excluder.excluded(p, True):
                continue
            for root, dirs, names in os.walk(p, followlinks=False):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and d not in _SKIP_DIRS
                    and not excluder.excluded(Path(root, d), True)
                )
                for name in sorted(names):
                    full = os.path.join(root, name)
                    if name.endswith(".py") and not excluder.excluded(Path(full), False):
                        add(full)
        elif p.exists() or p.is_symlink():
            if not excluder.excluded(p, False):
                add(str(given))
        else:
            errors.append(_file_error(os.path.normpath(str(given)), "no such file or folder"))
    return files, errors


@dataclass
class LintReport:
    """The outcome of :func:`lint_paths`.

    Attributes
    ----------
    findings:
        What remains (after fixes, when fixing), sorted.
    fixed:
        Findings removed by fixes (written, or shown as a diff).
    diffs:
        Unified diffs of the changes (only with ``diff=True``).
    files:
        Number of files checked.
    changed_files:
        Files the fixes changed (written unless ``diff=True``).
    """

    findings: list[Finding]
    fixed: list[Finding] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    files: int = 0
    changed_files: list[str] = field(default_factory=list)

    @property
    def fixable(self) -> tuple[int, int]:
        """How many remaining findings have a safe fix, and how many an unsafe one."""
        safe = sum(f.fixable == "safe" for f in self.findings)
        return safe, sum(f.fixable == "unsafe" for f in self.findings)


def _pool_context() -> Any:
    import multiprocessing

    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()  # pragma: no cover


def lint_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    config: LintConfig | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    fix: bool = False,
    unsafe_fixes: bool = False,
    diff: bool = False,
    jobs: int | None = None,
) -> LintReport:
    """Lint files and folders (``.py`` files, recursively; excludes from ``config``).

    Parameters
    ----------
    paths:
        Files and folders.  A path that does not exist is reported as OW900.
    config:
        Settings (:func:`find_config`); ``select`` replaces its ``select``, ``ignore``
        adds to its ``ignore``.
    fix:
        Apply safe fixes (and unsafe ones with ``unsafe_fixes``), writing each changed file
        atomically.
    diff:
        Compute the fixes and return them as unified diffs without writing.
    jobs:
        Worker processes; ``None`` uses every CPU when there are enough files.
    """
    config = config or LintConfig()
    if jobs is not None and jobs < 1:
        raise ValueError(f"Invalid jobs: {jobs} (must be >= 1)")
    codes = resolve_codes(
        config.select if select is None else list(select), [*config.ignore, *ignore]
    )
    if not paths:
        raise ValueError("no paths given; pass files or folders to lint")
    files, errors = _discover(paths, config)
    tasks = [_Task(p, d, codes, config, fix, unsafe_fixes, diff) for p, d in files]
    workers = jobs or min(os.cpu_count() or 1, max(1, len(tasks) // 8))
    if workers > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor  # only when there are many files

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
                chunk = max(1, len(tasks) // (workers * 4))
                results = list(pool.map(_process, tasks, chunksize=chunk))
    else:
        results = [_process(t) for t in tasks]
    report = LintReport(
        findings=sort_findings([*(e for e in errors if "OW900" in codes)]),
        files=len(tasks),
    )
    for res in results:
        report.findings.extend(res.findings)
        report.fixed.extend(res.fixed)
        if res.changed:
            report.changed_files.append(res.display)
        if res.diff:
            report.diffs.append(res.diff)
    report.findings = sort_findings(report.findings)
    report.fixed = sort_findings(report.fixed)
    return report
