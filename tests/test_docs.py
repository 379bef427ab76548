"""Every Python example in README.md and docs/ runs as written, and the site builds.

A fenced block whose info string is ``python`` is executed on its own, in a fresh namespace
and an empty working folder. A block not meant to run says so in its info string,
```` ```{ .python .no-run } ````, which the site still highlights as Python. Blocks fenced
as ``py`` are the linter's bad/good examples: each must start with ``# bad`` or ``# good``
(tests/audit/test_readme_rules.py lints them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(r"^(`{3,}|~{3,})\s*(.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    lang: str
    classes: tuple[str, ...]
    code: str

    @property
    def runs(self) -> bool:
        return self.lang == "python" and "no-run" not in self.classes


def parse_blocks(text: str, page: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their language and classes."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].lstrip())
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).strip()
        if fence[0] == "`" and "`" in info:  # inline code at the start of a line
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        if info.startswith("{"):
            classes = tuple(re.findall(r"\.([\w-]+)", info))
            lang = classes[0] if classes else ""
            classes = classes[1:]
        else:
            lang, classes = (info.split() or [""])[0], ()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: code block never closed")
        blocks.append(Block(page, i + 1, lang, classes, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _all_blocks() -> list[Block]:
    out: list[Block] = []
    for path in PAGES:
        out += parse_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return out


BLOCKS = _all_blocks()
RUNNABLE = [b for b in BLOCKS if b.runs]


def test_parse_blocks_reads_languages_classes_and_indented_fences() -> None:
    text = (
        "intro\n```python\nx = 1\n```\n"
        "- item\n\n  ```{ .python .no-run }\n  import missing\n  ```\n"
        "````py\n# bad\n```\n````\n"
        "```` ```python ```` is inline code\n"
    )
    a, b, c = parse_blocks(text, "t.md")
    assert (a.lang, a.runs, a.code, a.line) == ("python", True, "x = 1\n", 2)
    assert (b.lang, b.classes, b.runs, b.code) == ("python", ("no-run",), False, "import missing\n")
    assert (c.lang, c.runs, c.code) == ("py", False, "# bad\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```python\nx = 1\n", "t.md")


def test_readme_and_docs_have_examples() -> None:
    pages = {b.page for b in RUNNABLE}
    assert "README.md" in pages and len(pages) >= 8


def test_py_blocks_are_linter_examples() -> None:
    for b in BLOCKS:
        if b.lang == "py":
            assert re.match(r"# (bad|good)\n", b.code), f"{b.page}:{b.line}: use ```python"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"{b.page}:{b.line}")
def test_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = compile(block.code, f"{block.page}:{block.line}", "exec")
    exec(code, {"__name__": "__docs__"})


def _nav_files(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_every_page_is_in_the_nav() -> None:
    nav = _nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - set(nav) == set(), "add these pages to the nav in mkdocs.yml"
    assert set(nav) - pages == set(), "the nav names pages that do not exist"


@pytest.mark.skipif(
    shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
    reason="mkdocs is not installed: pip install -e '.[docs]'",
)
def test_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "api" / "training" / "index.html").is_file()
