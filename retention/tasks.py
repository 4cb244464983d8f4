"""Celery entry points of the nightly cycle on workers (retention/cycle.py has their bodies).

The canvas is built stage by stage: `cycle_stage_task` starts a stage (a plain one runs in it;
a chunked one enqueues a chord of `cycle_chunk_task`, or a chain for dispatch, whose body is
`cycle_finish_task`), and each finish enqueues the next stage's start. Every task is safe to
run twice (docs/scaling.md), so all acknowledge late and are requeued when their worker dies.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from retention.cycle import (
    CycleOptions,
    cycle_start_on_workers,
    worker_chunk,
    worker_stage_finish,
    worker_stage_start,
)
from retention.sources import sources_load

# How often a finish that found a chunk not yet recorded looks again (the chunk comes back
# when the broker redelivers it: at once after a pool process dies, after the visibility
# timeout after a whole worker dies). It gives up when the run stops running (failed, or
# taken over after its lock expired).
FINISH_RECHECK_SECONDS = 5


@shared_task(acks_late=True, reject_on_worker_lost=True)
def cycle_stage_task(run_id: int, index: int) -> None:
    worker_stage_start(run_id, index)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def cycle_chunk_task(run_id: int, index: int, chunk: int) -> int:
    return worker_chunk(run_id, index, chunk)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def cycle_finish_task(self: Any, run_id: int, index: int) -> bool:
    ended = worker_stage_finish(run_id, index)
    if ended is None:
        raise self.retry(countdown=FINISH_RECHECK_SECONDS)
    return ended


@shared_task
def cycle_nightly_task() -> dict[str, Any]:
    """Beat, nightly: the whole cycle on workers with the RETENTION_SOURCES file. A cycle
    still running (its lock held) makes this one a no-op with the reason in the result."""
    from retention.cycle import CycleError

    try:
        run = cycle_start_on_workers(CycleOptions(sources=sources_load(None)), trigger="beat")
    except CycleError as exc:
        return {"started": False, "reason": str(exc)}
    return {"started": True, "cycle": run.pk}
