"""A Dask client for the commands that spread their work over processes or machines
(``icdsl rate --workers``, ``icdsl cycle run --all --workers``): a local cluster of worker
processes, or a running cluster (``dask scheduler`` / ``dask worker``; docs/fleet.md)."""

from __future__ import annotations

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
