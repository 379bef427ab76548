"""The results store: every run of every sweep, in SQLite by default or in a shared
PostgreSQL database.

One table, ``runs``, with one row per run, keyed by ``(study, key)`` and made unique by the
database.  A worker *claims* a run by inserting its row as ``running``; it writes the result
and flips the row to ``done`` in one transaction.  So an interrupted sweep never leaves a
half-written result: a run is either done (and skipped on resume) or not (and redone), and
two workers can never both record the same run.

A ``running`` row whose worker died is reclaimed: at once when the worker ran on this host
and its process is gone, otherwise when its heartbeat is older than ``stale_after`` seconds.
A worker whose run was reclaimed (it was presumed dead) finds its row taken when it tries
to finish and drops its result, so no run is ever recorded twice.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_STORAGE", "RunRecord", "StorageError", "Store", "open_store"]

#: The storage used when none is given: a SQLite file in the working folder.
DEFAULT_STORAGE = "sqlite:///optiwise-bench.db"


class StorageError(ValueError):
    """The storage URL cannot be opened or used."""


@dataclass(frozen=True)
class RunRecord:
    """One row of the store.

    Attributes
    ----------
    study, key:
        The sweep the run belongs to and the run's name in it (unique together).
    optimizer, phase, lr, seed:
        What the run trains: ``phase`` is ``"tune"`` (LR search) or ``"final"`` (the best
        LR re-run over seeds).
    status:
        ``"running"`` or ``"done"``.
    worker:
        ``host:pid:token`` of the process that claimed it.
    started, finished, heartbeat:
        Unix times.
    result:
        The recorded result (``None`` while running).
    """

    study: str
    key: str
    optimizer: str
    phase: str
    lr: float
    seed: int
    status: str
    worker: str
    started: float
    finished: float | None
    heartbeat: float
    result: Mapping[str, Any] | None


def _import_sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise StorageError(
            "the benchmark store needs SQLAlchemy: pip install 'optiwise[bench]'"
        ) from None
    return sqlalchemy


def normalize_url(url: str | os.PathLike[str]) -> str:
    """A database URL for ``url``: ``sqlite:///...`` and ``postgresql://...`` pass through
    (``postgresql://`` uses psycopg 3 when it is installed); a plain file path means a
    SQLite file there."""
    text = os.fspath(url).strip()
    shown = _redact(text)
    if not text:
        raise StorageError("empty storage URL; use e.g. sqlite:///bench.db")
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser()}"
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        rest = text.split("://", 1)[1]
        if _installed("psycopg"):
            return f"postgresql+psycopg://{rest}"
        if _installed("psycopg2"):
            return f"postgresql+psycopg2://{rest}"
        raise StorageError(
            f"cannot open storage {shown!r}: PostgreSQL needs a driver; "
            "pip install 'optiwise[postgres]' (psycopg 3)"
        )
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
        raise StorageError(
            f"cannot open storage {shown!r}: unsupported scheme {scheme!r}; use "
            "sqlite:///path.db or postgresql://user:password@host/database"
        )
    return text


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url


def _serialize_sqlite_transactions(sa: Any, engine: Any) -> None:
    """Make every SQLite transaction ``BEGIN IMMEDIATE``: concurrent workers then queue for
    the write lock (up to the busy timeout) instead of failing on a lock upgrade."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below decide

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


class Store:
    """Runs of benchmark sweeps in a SQL database (see the module docstring).

    Parameters
    ----------
    url:
        ``sqlite:///path.db`` (the default, a file), ``sqlite://`` (in memory),
        ``postgresql://user:password@host/db`` (shared between machines), or a file path.
    stale_after:
        Seconds without a heartbeat after which another host's ``running`` row is taken
        over.  Workers beat at least every ``stale_after / 4`` seconds while training.
    """

    def __init__(
        self, url: str | os.PathLike[str] = DEFAULT_STORAGE, *, stale_after: float = 900.0
    ):
        if not stale_after > 0:
            raise ValueError(f"Invalid stale_after: {stale_after} (must be > 0 seconds)")
        sa = _import_sqlalchemy()
        self.url = normalize_url(url)
        self.stale_after = float(stale_after)
        self.host = socket.gethostname()
        self.worker = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sa = sa
        shown = _redact(self.url)
        if self.url.startswith("sqlite:///"):
            path = Path(self.url[len("sqlite:///") :])
            if path.is_dir():
                raise StorageError(f"cannot open storage {shown!r}: {path} is a folder")
            if not path.parent.is_dir():
                raise StorageError(
                    f"cannot open storage {shown!r}: folder {path.parent} does not exist"
                )
        kwargs: dict[str, Any] = {"future": True}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        try:
            self._engine = sa.create_engine(self.url, **kwargs)
        except Exception as exc:  # bad URL syntax, unknown dialect, missing driver
            reason = str(exc).replace(self.url, shown)
            raise StorageError(f"cannot open storage {shown!r}: {reason}") from None
        if self._engine.dialect.name == "sqlite":
            _serialize_sqlite_transactions(sa, self._engine)
        meta = sa.MetaData()
        self._runs = sa.Table(
            "optiwise_runs",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("study", sa.String(400), nullable=False),
            sa.Column("key", sa.String(400), nullable=False),
            sa.Column("optimizer", sa.String(200), nullable=False),
            sa.Column("phase", sa.String(20), nullable=False),
            sa.Column("lr", sa.Float, nullable=False),
            sa.Column("seed", sa.Integer, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("worker", sa.String(300), nullable=False),
            sa.Column("started", sa.Float, nullable=False),
            sa.Column("heartbeat", sa.Float, nullable=False),
            sa.Column("finished", sa.Float, nullable=True),
            sa.Column("result", sa.Text, nullable=True),
            sa.UniqueConstraint("study", "key", name="optiwise_runs_study_key"),
        )
        try:
            meta.create_all(self._engine)
        except Exception as exc:
            self._engine.dispose()
            reason = str(getattr(exc, "orig", None) or exc).replace(self.url, shown)
            reason = (reason.strip().splitlines() or [type(exc).__name__])[0]
            raise StorageError(f"cannot open storage {shown!r}: {reason}") from None

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @property
    def display_url(self) -> str:
        """The URL with any password replaced by ``***`` (for messages and reports)."""
        return _redact(self.url)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._engine.begin() as conn:
            yield conn

    # ----------------------------------------------------------------------------------------
    # Claiming and finishing runs
    # ----------------------------------------------------------------------------------------

    def _insert_new(self) -> Any:
        """An INSERT that does nothing when ``(study, key)`` exists (rowcount 0)."""
        name = self._engine.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        else:  # pragma: no cover - normalize_url admits only these two
            raise StorageError(f"unsupported database {name!r}")
        return insert(self._runs).on_conflict_do_nothing(index_elements=["study", "key"])

    def _is_stale(self, worker: str, heartbeat: float, now: float) -> bool:
        host, _, rest = worker.partition(":")
        pid_text = rest.split(":", 1)[0]
        if host == self.host and pid_text.isdigit() and int(pid_text) != os.getpid():
            return not _pid_alive(int(pid_text))
        return now - heartbeat > self.stale_after

    def claim(
        self, study: str, key: str, *, optimizer: str, phase: str, lr: float, seed: int
    ) -> bool:
        """Claim run ``key`` of ``study`` for this worker.

        Returns ``True`` when this worker now owns the run (a new row, a dead worker's row
        taken over, or its own unfinished row) and ``False`` when it is done or another
        live worker has it.
        """
        sa, runs = self._sa, self._runs
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(
                sa.select(runs.c.status, runs.c.worker, runs.c.heartbeat).where(
                    runs.c.study == study, runs.c.key == key
                )
            ).first()
            if row is None:
                values = dict(
                    study=study,
                    key=key,
                    optimizer=optimizer,
                    phase=phase,
                    lr=float(lr),
                    seed=int(seed),
                    status="running",
                    worker=self.worker,
                    started=now,
                    heartbeat=now,
                )
                conn.execute(self._insert_new().values(**values))
                # Read our own write back: rowcount is not reliable for INSERT on every
                # driver (PostgreSQL reports -1 when the dialect adds RETURNING).
                owner = conn.execute(
                    sa.select(runs.c.worker).where(runs.c.study == study, runs.c.key == key)
                ).scalar()
                return bool(owner == self.worker)
            status, worker, beat = row
            if status == "done":
                return False
            if worker == self.worker:
                return True  # ours and never finished (a run that was lost): run it again
            if not self._is_stale(worker, beat, now):
                return False
            taken = conn.execute(
                runs.update()
                .where(
                    runs.c.study == study,
                    runs.c.key == key,
                    runs.c.status == "running",
                    runs.c.worker == worker,
                    runs.c.heartbeat == beat,
                )
                .values(worker=self.worker, started=now, heartbeat=now, lr=float(lr))
            )
            return bool(taken.rowcount == 1)

    def _owned(self, study: str, key: str) -> Any:
        """The WHERE clause of this worker's running row ``key`` of ``study``."""
        runs = self._runs
        return self._sa.and_(
            runs.c.study == study,
            runs.c.key == key,
            runs.c.worker == self.worker,
            runs.c.status == "running",
        )

    def _update_owned(self, study: str, key: str, **values: Any) -> bool:
        with self._tx() as conn:
            res = conn.execute(self._runs.update().where(self._owned(study, key)).values(**values))
            return bool(res.rowcount == 1)

    def heartbeat(self, study: str, key: str) -> bool:
        """Mark a claimed run as alive; ``False`` when this worker no longer owns it."""
        return self._update_owned(study, key, heartbeat=time.time())

    def finish(self, study: str, key: str, result: Mapping[str, Any]) -> bool:
        """Record the result of a claimed run and mark it done, in one transaction.

        Returns ``False`` (and records nothing) when another worker took the run over.
        """
        text = json.dumps(result, allow_nan=True, separators=(",", ":"))
        now = time.time()
        return self._update_owned(
            study, key, status="done", result=text, finished=now, heartbeat=now
        )

    def release(self, study: str, key: str) -> None:
        """Give up a claimed, unfinished run (it will be run again later)."""
        with self._tx() as conn:
            conn.execute(self._runs.delete().where(self._owned(study, key)))

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------

    def runs(self, study: str | None = None, *, status: str | None = None) -> list[RunRecord]:
        """Every run (of ``study``, with ``status``), in the order they were claimed."""
        sa, runs = self._sa, self._runs
        query = sa.select(runs).order_by(runs.c.id)
        if study is not None:
            query = query.where(runs.c.study == study)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            RunRecord(
                study=r["study"],
                key=r["key"],
                optimizer=r["optimizer"],
                phase=r["phase"],
                lr=float(r["lr"]),
                seed=int(r["seed"]),
                status=r["status"],
                worker=r["worker"],
                started=float(r["started"]),
                finished=None if r["finished"] is None else float(r["finished"]),
                heartbeat=float(r["heartbeat"]),
                result=None if r["result"] is None else json.loads(r["result"]),
            )
            for r in rows
        ]

    def studies(self) -> list[str]:
        """Names of the studies with at least one run, sorted."""
        sa, runs = self._sa, self._runs
        with self._engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(runs.c.study).distinct()))


def open_store(url: str | os.PathLike[str] = DEFAULT_STORAGE, **kwargs: Any) -> Store:
    """Open (creating when needed) the results store at ``url``; see :class:`Store`."""
    return Store(url, **kwargs)
