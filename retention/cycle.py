"""The retention cycle: every stage of the service's main job, run in order, as one run.

A stage is either a plain function taking the cycle's options and returning a StageResult (a
JSON-safe dict of its counts and timings, printed as one key of `retention_cycle --json`, plus
a human summary) or None when it has nothing to do; or a ChunkedStage — start (returns the
chunks' JSON-safe arguments and a context), chunk (one piece of the work, idempotent), finish —
whose chunks workers share. STAGES lists them in order: import, contacts (the demo's synthetic
contacts, only when the sources file asks for them), scoring, recommendations, dispatch, relay,
simulate (the demo's, only when the sources file asks for it), uplift, second_cycle (the demo's
uplift-policy cycle, only when the sources file asks for it). Each app owns its
stage's body (scoring/cycle.py, campaigns/cycle.py, demo/cycle.py); this module only wires
them. Another stage is wired by adding it to STAGES (a plain function is enough).

Two ways to run the same stages, both recorded as a CycleRun that holds the one-cycle lock
(retention/cycle_runs.py): `run_cycle` in this process (the embedded default, with progress
bars), and `cycle_start_on_workers`, a Celery canvas built stage by stage — a chord of chunk
tasks per chunked stage (a chain for dispatch, whose campaigns go in priority order) whose body
finishes the stage and starts the next (retention/tasks.py). docs/scaling.md says why each
piece is safe to run twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from tqdm import tqdm

from customers.importers import ImportError_, import_file
from customers.management.import_command import format_summary
from customers.selectors import customers_totals
from retention.cycle_runs import (
    CycleBusy,
    cycle_chunk_done,
    cycle_run_fail,
    cycle_run_finish,
    cycle_run_start,
    cycle_stage_begin,
    cycle_stage_end,
)
from retention.models import CycleMode, CycleRun, CycleStatus, StageState
from retention.sources import Sources, sources_load


class CycleError(Exception):
    """A stage could not run; the message says which and why."""


@dataclass(frozen=True)
class CycleOptions:
    sources: Sources = field(default_factory=Sources)
    progress: bool = False
    workers: bool = False  # the stages run on Celery workers (a relay task per worker)


@dataclass
class StageResult:
    data: dict[str, Any]
    lines: list[str]


@dataclass(frozen=True)
class ChunkedStage:
    """A stage whose work is split into chunks that workers share.

    - start(options) → (chunks, context): each chunk's JSON-safe arguments and a JSON-safe
      context handed to every chunk and to the finish (both stored on the CycleRun);
    - chunk(context, arguments) → (rows, data): one chunk, safe to run twice; data (JSON-safe
      or None) is handed to the finish in chunk order;
    - finish(options, context, [data]) → StageResult, or None when the stage did nothing;
    - fail(context, error): optional, told when a chunk raised;
    - sequential: chunks run one after the other, in order (a chain, not a chord);
    - queue: the name of the setting holding the queue of its chunk tasks.
    """

    start: Callable[[CycleOptions], tuple[list[Any], dict[str, Any]]]
    chunk: Callable[[dict[str, Any], Any], tuple[int, dict[str, Any] | None]]
    finish: Callable[[CycleOptions, dict[str, Any], list[Any]], StageResult | None]
    fail: Callable[[dict[str, Any], str], None] | None = None
    sequential: bool = False
    queue: str = ""


# A plain stage returns None when it has nothing to do for these options (it is then left out).
PlainStage = Callable[[CycleOptions], StageResult | None]
Stage = PlainStage | ChunkedStage


def stage_import(options: CycleOptions) -> StageResult:
    """Import the files the sources file lists, then count what the database holds."""
    started = time.perf_counter()
    files: list[dict[str, Any]] = []
    lines: list[str] = []
    for item in options.sources.imports:
        try:
            summary = import_file(
                kind=item.kind,
                path=item.path,
                mapping=item.map,
                date_format=item.date_format,
                delimiter=item.delimiter,
                sheet=item.sheet,
                create_customers=item.create_customers,
                defaults={"currency": item.currency} if item.currency else None,
                guest_orders="skip" if item.guest_orders == "skip" else "reject",
                progress=options.progress,
            )
        except ImportError_ as exc:
            raise CycleError(f"import: {exc}") from exc
        files.append(summary.to_dict())
        lines.append(format_summary(summary))
    if not files:
        lines.append(
            "No sources configured (--sources FILE or RETENTION_SOURCES): nothing imported."
        )
    totals = customers_totals()
    lines.append(
        "In the database: " + " · ".join(f"{count:,} {name}" for name, count in totals.items())
    )
    return StageResult(
        {"files": files, "totals": totals, "seconds": round(time.perf_counter() - started, 3)},
        lines,
    )


def stage_contacts(options: CycleOptions) -> StageResult | None:
    """Demo only, when the sources file has a "demo": {"contacts": …} entry: SYNTHETIC contact
    details and consent, product categories and the attributes the demo's rules read
    (demo/contacts.py). Otherwise skipped."""
    from demo.contacts import demo_contacts_add

    config = options.sources.demo.get("contacts")
    if not config:
        return None
    data, lines = demo_contacts_add(config=config, as_of=options.sources.as_of)
    return StageResult(data, lines)


def _embedded() -> bool:
    """No broker (REDIS_URL empty makes Celery eager): tasks would run inline, no worker."""
    from campaigns.tasks import tasks_run_in_process

    return tasks_run_in_process()


# --- scoring -----------------------------------------------------------------------------------


def _scoring_start(options: CycleOptions) -> tuple[list[Any], dict[str, Any]]:
    """Train if there is no active model, then create (or resume) the day's scoring run."""
    from scoring.cycle import scoring_start
    from scoring.errors import ScoringError, TrainingError

    try:
        chunks, context = scoring_start(
            config=dict(options.sources.scoring), progress=options.progress
        )
    except (ScoringError, TrainingError) as exc:
        raise CycleError(f"scoring: {exc}") from exc
    return list(chunks), context


def _scoring_chunk(context: dict[str, Any], chunk: Any) -> tuple[int, None]:
    from scoring.cycle import scoring_chunk

    return scoring_chunk(context=context, chunk=chunk), None


def _scoring_finish(options: CycleOptions, context: dict[str, Any], _: list[Any]) -> StageResult:
    from scoring.cycle import scoring_finish

    data, lines = scoring_finish(context=context)
    return StageResult(data, lines)


def _scoring_fail(context: dict[str, Any], error: str) -> None:
    from scoring.cycle import scoring_fail

    scoring_fail(context=context, error=error)


stage_scoring = ChunkedStage(
    start=_scoring_start,
    chunk=_scoring_chunk,
    finish=_scoring_finish,
    fail=_scoring_fail,
    queue="CYCLE_SCORING_QUEUE",
)


def stage_recommendations(options: CycleOptions) -> StageResult:
    """Refresh every customer's product recommendations from the order lines (after scoring,
    before the dispatch, so the messages carry them); says so when there are no lines."""
    from scoring.cycle import recommendations_stage

    data, lines = recommendations_stage()
    return StageResult(data, lines)


# --- dispatch and relay --------------------------------------------------------------------------


def _demo_now(options: CycleOptions) -> Any:
    """The demo's clock: its as-of date at the demo entry's dispatch_time, or None (now)."""
    from demo.cycle import DemoError, demo_dispatch_moment

    try:
        return demo_dispatch_moment(config=options.sources.demo, as_of=options.sources.as_of)
    except DemoError as exc:
        raise CycleError(str(exc)) from exc


def _dispatch_start(options: CycleOptions) -> tuple[list[Any], dict[str, Any]]:
    """Seed the sources file's campaigns (when none exist); one chunk per active campaign."""
    from campaigns.cycle import dispatch_start

    chunks, context = dispatch_start(
        campaigns_spec=options.sources.campaigns, now=_demo_now(options)
    )
    return list(chunks), context


def _dispatch_chunk(context: dict[str, Any], chunk: Any) -> tuple[int, dict[str, Any]]:
    from campaigns.cycle import dispatch_chunk

    return dispatch_chunk(context=context, chunk=int(chunk))


def _dispatch_finish(
    options: CycleOptions, context: dict[str, Any], summaries: list[Any]
) -> StageResult:
    from campaigns.cycle import dispatch_finish

    data, lines = dispatch_finish(context=context, summaries=summaries)
    return StageResult(data, lines)


stage_dispatch = ChunkedStage(
    start=_dispatch_start,
    chunk=_dispatch_chunk,
    finish=_dispatch_finish,
    sequential=True,  # priority order: a campaign sees what a higher one took this cycle
    queue="CYCLE_DISPATCH_QUEUE",
)


def _relay_start(options: CycleOptions) -> tuple[list[Any], dict[str, Any]]:
    """Nothing to do in the embedded mode (dispatch delivered); else one relay pass per
    worker process (CYCLE_RELAY_TASKS) on workers, one in this process otherwise."""
    if _embedded():
        return [], {"skip": True}
    count = max(1, settings.CYCLE_RELAY_TASKS) if options.workers else 1
    context: dict[str, Any] = {"started": time.time()}
    moment = _demo_now(options)
    if moment is not None:  # the demo's clock: relay as of its dispatch moment
        context["now"] = moment.isoformat()
    return list(range(count)), context


def _relay_chunk(context: dict[str, Any], _chunk: Any) -> tuple[int, None]:
    from campaigns.cycle import relay_chunk

    return relay_chunk(context=context), None


def _relay_finish(
    options: CycleOptions, context: dict[str, Any], _: list[Any]
) -> StageResult | None:
    from campaigns.selectors import outbox_waiting_count

    if context.get("skip"):
        return None
    waiting = outbox_waiting_count()
    lines = [
        "Relay: the outbox was delivered at the per-minute rates (CAMPAIGN_RATE_*)"
        + (
            f"; {waiting:,} message(s) wait for the next minutes or the end of quiet hours "
            "(the relay beat sends them)"
            if waiting
            else "; nothing waits."
        )
    ]
    data = {"waiting": waiting, "seconds": round(time.time() - context["started"], 3)}
    return StageResult(data, lines)


stage_relay = ChunkedStage(
    start=_relay_start, chunk=_relay_chunk, finish=_relay_finish, queue="CYCLE_DISPATCH_QUEUE"
)


# --- the demo's simulation and the uplift snapshots ---------------------------------------------


def stage_simulate(options: CycleOptions) -> StageResult | None:
    """Demo only, when the sources file has a "demo": {"simulate": …} entry: synthetic
    responses and orders with a known true effect (demo/cycle.py). Otherwise skipped."""
    from demo.cycle import simulate_stage

    if not options.sources.demo.get("simulate"):
        return None
    data, lines = simulate_stage(
        config=options.sources.demo["simulate"], as_of=options.sources.as_of
    )
    return StageResult(data, lines)


def stage_uplift(options: CycleOptions) -> StageResult:
    """Snapshot every campaign's uplift (and the program report) and summarise them."""
    from campaigns.cycle import uplift_stage

    data, lines = uplift_stage(as_of=options.sources.as_of)
    return StageResult(data, lines)


def stage_second_cycle(options: CycleOptions) -> StageResult | None:
    """Demo only, when the sources file has a "demo": {"second_cycle": …} entry: once the first
    cycle's windows have closed, train the uplift model, target by uplift policy, rescore,
    dispatch, simulate and compare the two cycles (demo/cycle.py). Otherwise skipped."""
    from demo.cycle import DemoError, second_cycle_stage

    config = options.sources.demo.get("second_cycle")
    if not config:
        return None
    try:
        data, lines = second_cycle_stage(
            config=config,
            scoring=options.sources.scoring,
            simulate=options.sources.demo.get("simulate") or {},
        )
    except DemoError as exc:
        raise CycleError(str(exc)) from exc
    return StageResult(data, lines)


STAGES: list[tuple[str, Stage]] = [
    ("import", stage_import),
    ("contacts", stage_contacts),
    ("scoring", stage_scoring),
    ("recommendations", stage_recommendations),
    ("dispatch", stage_dispatch),
    ("relay", stage_relay),
    ("simulate", stage_simulate),
    ("uplift", stage_uplift),
    ("second_cycle", stage_second_cycle),
]


def stage_named(name: str) -> Stage:
    for stage_name, stage in STAGES:
        if stage_name == name:
            return stage
    raise CycleError(f"unknown stage {name}; stages: {', '.join(n for n, _ in STAGES)}")


def _selected(only: list[str] | None) -> list[str]:
    names = [name for name, _ in STAGES]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise CycleError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(names)}")
    return [name for name in names if not only or name in only]


def _start(options: CycleOptions, names: list[str], mode: str, trigger: str) -> CycleRun:
    path = options.sources.path
    try:
        return cycle_run_start(
            stages=names, mode=mode, sources_path=str(path) if path else "", trigger=trigger
        )
    except CycleBusy as exc:
        raise CycleError(f"refused: {exc}") from exc


# --- in this process -------------------------------------------------------------------------


def run_cycle(
    options: CycleOptions,
    *,
    only: list[str] | None = None,
    on_stage: Callable[[str, StageResult], None] | None = None,
    trigger: str = "command",
) -> dict[str, Any]:
    """Run the stages in order (or only those named) in this process, recorded as a CycleRun
    holding the one-cycle lock; returns {stage: data} (skipped stages left out)."""
    names = _selected(only)
    run = _start(options, names, CycleMode.INLINE, trigger)
    results: dict[str, Any] = {}
    current = names[0] if names else ""
    try:
        for name in names:
            current = name
            result = _run_stage_inline(run.pk, name, stage_named(name), options)
            if result is None:
                continue
            results[name] = result.data
            if on_stage:
                on_stage(name, result)
    except BaseException as exc:
        cycle_run_fail(run_id=run.pk, stage=current, error=f"{type(exc).__name__}: {exc}")
        raise
    cycle_run_finish(run_id=run.pk)
    return results


def _run_stage_inline(
    run_id: int, name: str, stage: Stage, options: CycleOptions
) -> StageResult | None:
    started = time.perf_counter()
    if not isinstance(stage, ChunkedStage):
        cycle_stage_begin(run_id=run_id, name=name)
        result = stage(options)
    else:
        cycle_stage_begin(run_id=run_id, name=name)
        chunks, context = stage.start(options)
        cycle_stage_begin(run_id=run_id, name=name, chunks=chunks, context=context)
        results: list[Any] = []
        bar = tqdm(
            total=len(chunks),
            unit="chunk",
            desc=name,
            disable=not options.progress or not chunks,
            file=sys.stderr,
        )
        try:
            for index, arguments in enumerate(chunks):
                rows, data = stage.chunk(context, arguments)
                cycle_chunk_done(run_id=run_id, name=name, index=index, rows=rows, data=data)
                results.append(data)
                bar.update(1)
                bar.set_postfix(rows=f"{rows:,}")
        except Exception as exc:
            if stage.fail:
                stage.fail(context, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            bar.close()
        result = stage.finish(options, context, results)
    cycle_stage_end(
        run_id=run_id,
        name=name,
        data=result.data if result else None,
        lines=result.lines if result else [],
        seconds=time.perf_counter() - started,
    )
    return result


# --- on Celery workers -----------------------------------------------------------------------


def cycle_start_on_workers(
    options: CycleOptions, *, only: list[str] | None = None, trigger: str = "command"
) -> CycleRun:
    """Record a CycleRun (taking the lock) and enqueue its first stage; workers do the rest."""
    from retention.tasks import cycle_stage_task

    if _embedded():
        raise CycleError(
            "no broker: REDIS_URL is empty, so there are no workers to run the cycle on; "
            "run it in this process (without --workers)"
        )
    run = _start(options, _selected(only), CycleMode.WORKERS, trigger)
    cycle_stage_task.apply_async((run.pk, 0), queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    return run


def _options_for(run: CycleRun) -> CycleOptions:
    sources = sources_load(Path(run.sources_path)) if run.sources_path else Sources()
    return CycleOptions(sources=sources, progress=False, workers=True)


def _running(run_id: int) -> CycleRun | None:
    run = CycleRun.objects.filter(pk=run_id).first()
    return run if run is not None and run.status == CycleStatus.RUNNING else None


def _next_stage(run_id: int, index: int) -> None:
    from retention.tasks import cycle_stage_task

    run = _running(run_id)
    if run is None:
        return
    if index + 1 < len(run.stages):
        cycle_stage_task.delay(run_id, index + 1)
    else:
        cycle_run_finish(run_id=run_id)


def _failing(run_id: int, name: str) -> Any:
    """A context manager marking the run failed at `name` if the body raises."""
    from contextlib import contextmanager

    @contextmanager
    def guard() -> Any:
        try:
            yield
        except Exception as exc:
            cycle_run_fail(run_id=run_id, stage=name, error=f"{type(exc).__name__}: {exc}")
            raise

    return guard()


def worker_stage_start(run_id: int, index: int) -> None:
    """Start stage `index` of a run on workers: a plain stage runs here; a chunked stage
    records its chunks (once: a redelivered start reuses them) and enqueues the chunks not done
    yet, then its finish (a chord, or a chain for a sequential stage)."""
    run = _running(run_id)
    if run is None:
        return
    entry = run.stages[index]
    name = entry["name"]
    if entry["state"] in (StageState.DONE, StageState.SKIPPED):
        _next_stage(run_id, index)  # a redelivered start after the stage ended
        return
    stage = stage_named(name)
    with _failing(run_id, name):
        options = _options_for(run)
        if not isinstance(stage, ChunkedStage):
            cycle_stage_begin(run_id=run_id, name=name)
            started = time.perf_counter()
            result = stage(options)
            ended = cycle_stage_end(
                run_id=run_id,
                name=name,
                data=result.data if result else None,
                lines=result.lines if result else [],
                seconds=time.perf_counter() - started,
            )
            if ended:
                _next_stage(run_id, index)
            return
        if entry["chunks_total"] is None:
            cycle_stage_begin(run_id=run_id, name=name)
            chunks, context = stage.start(options)
            entry = cycle_stage_begin(run_id=run_id, name=name, chunks=chunks, context=context)
        pending = [i for i in range(entry["chunks_total"]) if str(i) not in entry["done"]]
        _enqueue_chunks(run_id, index, stage, pending)


def _enqueue_chunks(run_id: int, index: int, stage: ChunkedStage, pending: list[int]) -> None:
    from celery import chain, chord

    from retention.tasks import cycle_chunk_task, cycle_finish_task

    queue = getattr(settings, stage.queue, "") if stage.queue else ""
    members = [cycle_chunk_task.si(run_id, index, i) for i in pending]
    if queue:
        members = [member.set(queue=queue) for member in members]
    finish = cycle_finish_task.si(run_id, index)
    if not members:
        finish.delay()
    elif stage.sequential:
        chain(*members, finish).apply_async()
    else:
        chord(members)(finish)


def worker_chunk(run_id: int, index: int, chunk: int) -> int:
    """Run chunk `chunk` of stage `index` unless it is recorded done; returns its rows."""
    run = _running(run_id)
    if run is None:
        return 0
    entry = run.stages[index]
    if str(chunk) in entry["done"]:
        return 0
    stage = stage_named(entry["name"])
    assert isinstance(stage, ChunkedStage)
    with _failing(run_id, entry["name"]):
        try:
            rows, data = stage.chunk(entry["context"], entry["chunks"][chunk])
        except Exception as exc:
            if stage.fail:
                stage.fail(entry["context"], f"{type(exc).__name__}: {exc}")
            raise
        cycle_chunk_done(run_id=run_id, name=entry["name"], index=chunk, rows=rows, data=data)
    return rows


def worker_stage_finish(run_id: int, index: int) -> bool | None:
    """Finish stage `index` once every chunk is recorded done, then start the next stage.

    Returns None when not every chunk is done yet (the caller retries: a chord body can fire
    before a chunk redelivered after a worker died is recorded), else whether it ended the
    stage (False for a redelivered finish)."""
    run = _running(run_id)
    if run is None:
        return False
    entry = run.stages[index]
    name = entry["name"]
    if entry["state"] in (StageState.DONE, StageState.SKIPPED):
        return False
    total = entry["chunks_total"] or 0
    if len(entry["done"]) < total:
        return None
    stage = stage_named(name)
    assert isinstance(stage, ChunkedStage)
    with _failing(run_id, name):
        results = [entry["done"][str(i)]["data"] for i in range(total)]
        result = stage.finish(_options_for(run), entry["context"], results)
        ended = cycle_stage_end(
            run_id=run_id,
            name=name,
            data=result.data if result else None,
            lines=result.lines if result else [],
        )
    if ended:
        _next_stage(run_id, index)
    return ended
