"""Precision and recall of ``optiwise lint`` on hand-labelled real training scripts.

    python benchmarks/lint_corpus.py DIR [--corpus benchmarks/lint_corpus.json]

DIR holds the scripts listed in the corpus file, each under its ``file`` name (fetched from
the named repository, path and commit; they are not part of this repository). A finding
counts once per (script, code). Prints the confusion counts, precision and recall overall and
for the findings whose rule is major or critical, the crashes (OW900), and every miss and
false alarm.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optiwise.audit.findings import CODES, Severity
from optiwise.audit.lint import lint_file

SERIOUS = (Severity.CRITICAL, Severity.MAJOR)


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f} ({a}/{b})" if b else "n/a (0/0)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).with_name("lint_corpus.json"))
    args = ap.parse_args()
    entries = json.loads(args.corpus.read_text(encoding="utf-8"))["scripts"]
    tp: set[tuple[str, str]] = set()
    fp: set[tuple[str, str]] = set()
    fn: set[tuple[str, str]] = set()
    severity: dict[tuple[str, str], Severity] = {}
    crashes: list[str] = []
    missing: list[str] = []
    for e in entries:
        path = args.dir / e["file"]
        if not path.is_file():
            missing.append(e["file"])
            continue
        findings = lint_file(path)
        found = {f.code for f in findings if f.code != "OW900"}
        crashes += [f"{e['file']}: {f.message}" for f in findings if f.code == "OW900"]
        for f in findings:
            severity.setdefault((e["file"], f.code), f.severity)
        expected = set(e["expected"])
        for code in expected:
            severity.setdefault((e["file"], code), CODES[code].severity)
        tp |= {(e["file"], c) for c in found & expected}
        fp |= {(e["file"], c) for c in found - expected}
        fn |= {(e["file"], c) for c in expected - found}
    if missing:
        print(f"missing from {args.dir}: {', '.join(missing)}", file=sys.stderr)
        return 2

    def serious(pairs: set[tuple[str, str]]) -> int:
        return sum(1 for p in pairs if severity[p] in SERIOUS)

    found, labelled = len(tp) + len(fp), len(tp) + len(fn)
    print(f"scripts {len(entries)}; findings {found}; labelled mistakes {labelled}")
    print(f"precision {_ratio(len(tp), found)}; recall {_ratio(len(tp), labelled)}")
    stp, sfp, sfn = serious(tp), serious(fp), serious(fn)
    print(f"major/critical: precision {_ratio(stp, stp + sfp)}; recall {_ratio(stp, stp + sfn)}")
    print(f"crashes (OW900): {len(crashes)}")
    for file, code in sorted(fn):
        print(f"  miss        {file} {code}")
    for file, code in sorted(fp):
        print(f"  false alarm {file} {code}")
    for line in crashes:
        print(f"  crash       {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
