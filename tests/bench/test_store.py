from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from optiwise.bench import StorageError, SweepConfig, open_store, run_sweep
from optiwise.bench.store import Store, normalize_url

RUN = dict(optimizer="sgd", phase="tune", lr=0.1, seed=0)


def _insert_running(db: Path, worker: str, heartbeat: float, key: str = "k") -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO optiwise_runs (study, key, optimizer, phase, lr, seed, status, worker, "
            "started, heartbeat) VALUES ('s', ?, 'sgd', 'tune', 0.1, 0, 'running', ?, ?, ?)",
            (key, worker, heartbeat, heartbeat),
        )


def test_claim_finish_and_release(tmp_path: Path) -> None:
    with open_store(tmp_path / "a.db") as a, open_store(tmp_path / "a.db") as b:
        assert a.claim("s", "k", **RUN)
        assert a.claim("s", "k", **RUN)  # ours and unfinished: still ours
        assert not b.claim("s", "k", **RUN)  # another live worker has it
        assert not b.finish("s", "k", {"x": 1})  # b does not own it
        assert a.heartbeat("s", "k")
        assert a.finish("s", "k", {"x": 1.5, "nan": float("nan")})
        assert not a.claim("s", "k", **RUN) and not b.claim("s", "k", **RUN)  # done
        (rec,) = b.runs("s")
        assert rec.status == "done" and rec.result is not None and rec.result["x"] == 1.5
        assert rec.result["nan"] != rec.result["nan"]
        assert b.claim("s", "k2", **RUN)
        b.release("s", "k2")
        assert [r.key for r in a.runs("s")] == ["k"]
        assert a.studies() == ["s"]


def test_dead_local_worker_is_taken_over_at_once(tmp_path: Path) -> None:
    db = tmp_path / "dead.db"
    Store(db).close()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    with open_store(db) as store:
        _insert_running(db, f"{store.host}:{proc.pid}:deadbeef", time.time())
        assert store.claim("s", "k", **RUN)
        assert store.finish("s", "k", {"ok": True})


def test_live_worker_elsewhere_keeps_its_run_until_its_heartbeat_is_stale(tmp_path: Path) -> None:
    db = tmp_path / "remote.db"
    Store(db).close()
    _insert_running(db, "other-host:123:abc", time.time(), key="fresh")
    _insert_running(db, "other-host:124:abd", time.time() - 1000, key="stale")
    with open_store(db, stale_after=600) as store:
        assert not store.claim("s", "fresh", **RUN)
        assert store.claim("s", "stale", **RUN)


def test_a_worker_whose_run_was_taken_over_records_nothing(tmp_path: Path) -> None:
    db = tmp_path / "over.db"
    with open_store(db, stale_after=0.01) as slow, open_store(db, stale_after=0.01) as other:
        slow.host = "host-a"  # pretend the two workers are on different machines
        slow.worker = "host-a:1:aaaa"
        other.host = "host-b"
        other.worker = "host-b:2:bbbb"
        assert slow.claim("s", "k", **RUN)
        time.sleep(0.05)
        assert other.claim("s", "k", **RUN)  # slow looked dead
        assert not slow.finish("s", "k", {"by": "slow"})
        assert other.finish("s", "k", {"by": "other"})
        (rec,) = other.runs("s")
        assert rec.result == {"by": "other"}


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite:////no/such/folder/x.db", "folder /no/such/folder does not exist"),
        ("mysql://user:secret@host/db", "unsupported scheme 'mysql'"),
        ("", "empty storage URL"),
    ],
)
def test_storage_that_cannot_be_opened(url: str, match: str) -> None:
    with pytest.raises(StorageError, match=match) as err:
        open_store(url)
    assert "secret" not in str(err.value)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not SQLite\n" * 10)
    with pytest.raises(StorageError, match="cannot open storage"):
        open_store(bad)
    with pytest.raises(StorageError, match="is a folder"):
        open_store(tmp_path)


def test_postgres_urls_need_a_driver_and_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(StorageError, match=r"optiwise\[postgres\]") as err:
        normalize_url("postgresql://me:secret@db.example/bench")
    assert "secret" not in str(err.value) and "me:***@" in str(err.value)


def test_plain_paths_mean_sqlite(tmp_path: Path) -> None:
    assert normalize_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    with open_store(tmp_path / "x.db") as store:
        assert repr(store) == f"Store('sqlite:///{tmp_path / 'x.db'}')"


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from optiwise.bench import SweepConfig, open_store, run_sweep
    from optiwise.bench import protocol as P

    real = P.train_run
    calls = []

    def train_run(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # a hard crash in the middle of a run
        return real(*args, **kwargs)

    P.train_run = train_run
    torch.set_num_threads(1)
    cfg = SweepConfig(workload="toy-beale", optimizers=("sgd",), seeds=1, lr_grid=3, budget=30)
    run_sweep(cfg, open_store(sys.argv[1]))
    """
)


def test_killed_sweep_leaves_a_sound_store_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(db)], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with open_store(db) as store:
        left = store.runs()
        assert [r.status for r in left] == ["done", "done", "running"]
        cfg = SweepConfig(workload="toy-beale", optimizers=("sgd",), seeds=1, lr_grid=3, budget=30)
        result = run_sweep(cfg, store)
        after = store.runs()
    assert result.complete
    keys = [r.key for r in after]
    assert len(keys) == len(set(keys)) and all(r.status == "done" for r in after)
    assert {r.key: r.finished for r in left[:2]} == {r.key: r.finished for r in after[:2]}
    assert len(after) == sum(len(p.tuning) + len(p.finals) for p in result.optimizers)


_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from optiwise.bench import SweepConfig, open_store, run_sweep

    torch.set_num_threads(1)
    cfg = SweepConfig(workload="toy-noisy-quadratic", optimizers=("sgd", "adam"), seeds=2,
                      lr_grid=3, budget=60)
    with open_store(sys.argv[1]) as store:
        result = run_sweep(cfg, store, poll=0.2)
    print(sum(len(p.tuning) + len(p.finals) for p in result.optimizers))
    """
)

_STORAGES = [pytest.param("sqlite", id="sqlite")]
if os.environ.get("OPTIWISE_TEST_POSTGRES"):  # e.g. postgresql://user@127.0.0.1:5432/db
    _STORAGES.append(pytest.param(os.environ["OPTIWISE_TEST_POSTGRES"], id="postgres"))


@pytest.mark.parametrize("storage", _STORAGES)
def test_two_workers_share_one_study(storage: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}" if storage == "sqlite" else storage
    if storage != "sqlite":  # a clean table for this test
        with open_store(url) as store:
            store._runs.drop(store._engine)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    totals = {int(out.decode().split()[-1]) for out, _ in outs}
    with open_store(url) as store:
        runs = store.runs()
    keys = [(r.study, r.key) for r in runs]
    assert len(keys) == len(set(keys))  # no run recorded twice
    assert all(r.status == "done" for r in runs)
    assert totals == {len(runs)}  # both workers see the same complete sweep
