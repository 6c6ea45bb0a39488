"""A Dask client for the commands that spread their work over processes or machines
(``icdsl rate --workers``, ``icdsl cycle run --all --workers``): a local cluster of worker
processes, or a running cluster (``dask scheduler`` / ``dask worker``; docs/fleet.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ClusterError(Exception):
    """The cluster asked for cannot be had (a scheduler out of reach, a bad worker count)."""


@contextmanager
def dask_client(*, workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: of a new local cluster of ``workers`` worker processes (one thread each:
    the executors are single-threaded), or of the running cluster at ``scheduler``
    (``tcp://HOST:PORT``)."""
    # lazy: dask.distributed is heavy (tornado, the scheduler) and needed only when a cluster is asked for
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {e}; start one with "
                               "`dask scheduler` and its workers with `dask worker " + scheduler + "`") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None or workers < 1:
        raise ClusterError("--workers must be 1 or more")
    # the dashboard on a free port: a fixed one clashes with another cluster on the machine
    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def _same(value: Any) -> Any:
    return value


def shared(client: Any, value: Any, name: str) -> Any:
    """A future of ``value`` (the plan) that the tasks of a run take as an argument, so it
    travels to each worker once, not with every task. Not ``client.scatter``: scattered data
    cannot be computed again, and the scheduler keeps one copy of it (its active memory manager
    drops the extra replicas of a broadcast), so a worker lost with that copy would cancel every
    task still waiting for it. This is a task whose result is ``value``: if the worker holding it
    dies, the scheduler computes it again elsewhere and the run goes on."""
    return client.submit(_same, value, pure=False, key=f"icdsl-{name}-{uuid.uuid4().hex[:12]}")
