"""The Dask cluster of ``mlp-accel train --dask-workers/--scheduler``: open and close it."""

from __future__ import annotations

import argparse
from typing import Any


def _dask_client(args: argparse.Namespace) -> tuple[Any, Any]:
    """A Dask client for --dask-workers (a local cluster) or --scheduler, else (None, None)."""
    if not args.dask_workers and not args.scheduler:
        if args.local_steps != 1:
            raise ValueError("--local-steps needs --dask-workers or --scheduler")
        return None, None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(
            "--dask-workers/--scheduler need Dask: pip install 'mlp-accel[dask]'"
        ) from None
    if args.scheduler:
        try:
            return Client(args.scheduler), None
        except Exception as exc:
            raise RuntimeError(
                f"cannot connect to the Dask scheduler at {args.scheduler} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    cluster = LocalCluster(
        n_workers=args.dask_workers, threads_per_worker=1, dashboard_address=":0"
    )
    return Client(cluster), cluster


def _close_dask(client: Any, cluster: Any) -> None:
    """Close a client and cluster; a cluster that already died must not mask the real error."""
    for thing in (client, cluster):
        if thing is not None:
            try:
                thing.close()
            except Exception:  # closing a dead cluster can raise anything
                pass
