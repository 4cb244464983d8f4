"""How many threads the numerical libraries (BLAS, OpenMP) may start for a computation.

numpy's and scipy's OpenBLAS and scikit-learn's OpenMP start a thread per core by default.
Scoring already runs one process per core (a Celery pool) or beside its own database work
(the embedded run's reader and writer threads, PostgreSQL on the other core): each process's
extra threads then fight the others for the same cores, and OpenBLAS threads spin while they
wait. Measured on the 2-core bench machine (docs/scaling.md, tenth session): two processes
scoring 50,000 customers each at once took 412–418 ms a chunk with the libraries' defaults
and 313–316 ms limited to one thread (one process alone: 274 and 292 ms).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


@contextmanager
def threads_limited(limit: int) -> Iterator[None]:
    """Inside the block, the BLAS and OpenMP libraries loaded in this process use at most
    `limit` threads (0 or less: their defaults, untouched); on leaving, the limits found on
    entering come back. Scoring computes on a process's main thread (a Celery prefork
    child's task, the embedded run's loop), where both libraries honour it. Elsewhere it is
    best effort: OpenMP's limit is per thread, and OpenBLAS 0.3.30 ignored a limit set on
    another thread once the main thread had set and restored one (seen here; so of callers
    on several threads at once, the last to leave may restore another's limit)."""
    global _controller
    if limit <= 0:
        yield
        return
    if _controller is None:  # the libraries are loaded by now (numpy, scipy, scikit-learn)
        _controller = ThreadpoolController()
    limiter = _controller.limit(limits=limit)
    try:
        yield
    finally:
        limiter.restore_original_limits()
