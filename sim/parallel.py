"""Episodes in seed order from one process or a pool of spawned ones.

``slowfast demos --workers`` and ``slowfast evaluate --workers`` run each worker's own
simulator: ``init(spec)`` builds it in the worker (module-level functions, so that a spawned
process can take them), ``run(seed)`` runs one episode there, ``close()`` releases it. Results
come back in the order of ``seeds`` whatever the count, so the outcome is the one a single
process gives.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator


def in_seed_order(init: Callable[[dict], None], run: Callable[[int], object], close: Callable[[], None],
                  spec: dict, seeds: Iterable[int], workers: int) -> Iterator:
    """``run(seed)`` for each seed, after ``init(spec)``, here (``workers`` 1) or in a pool."""
    seeds = list(seeds)
    if workers <= 1 or len(seeds) <= 1:
        init(spec)
        try:
            for s in seeds:
                yield run(s)
        finally:
            close()
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(workers, len(seeds)), initializer=init, initargs=(spec,)) as pool:
        yield from pool.imap(run, seeds)


def check_workers(workers: int, name: str = "--workers") -> int:
    """``workers`` if it is 1 .. the machine's cores, else ValueError (one process per core at most)."""
    import os

    cores = max(1, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= cores:
        raise ValueError(f"{name}: {workers} outside 1..{cores}")
    return workers
