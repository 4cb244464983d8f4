"""The retention cycle: every stage of the service's main job, run in order.

Each stage is a function taking the cycle's options and returning a JSON-safe dict of its
counts and timings (printed as one key of `retention_cycle --json`) plus a human summary.
STAGES lists them in order: import, contacts (the demo's synthetic contacts, only when the
sources file asks for them), scoring, recommendations, dispatch, simulate (the demo's, only
when the sources file asks for it), uplift. Each app owns its stage's body (scoring/cycle.py,
campaigns/cycle.py, demo/cycle.py); this module only wires them, and the sources file is read
once (retention/sources.py) before any stage runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from customers.importers import ImportError_, import_file
from customers.management.import_command import format_summary
from customers.selectors import customers_totals
from retention.sources import Sources


class CycleError(Exception):
    """A stage could not run; the message says which and why."""


@dataclass(frozen=True)
class CycleOptions:
    sources: Sources = field(default_factory=Sources)
    progress: bool = False


@dataclass
class StageResult:
    data: dict[str, Any]
    lines: list[str]


# A stage returns None when it has nothing to do for these options (it is then left out).
Stage = Callable[[CycleOptions], StageResult | None]


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


def stage_scoring(options: CycleOptions) -> StageResult:
    """Train if there is no active model, then score every customer as of the cycle's date."""
    from scoring.cycle import scoring_stage
    from scoring.errors import ScoringError, TrainingError

    try:
        data, lines = scoring_stage(config=dict(options.sources.scoring), progress=options.progress)
    except (ScoringError, TrainingError) as exc:
        raise CycleError(f"scoring: {exc}") from exc
    return StageResult(data, lines)


def stage_recommendations(options: CycleOptions) -> StageResult:
    """Refresh every customer's product recommendations from the order lines (after scoring,
    before the dispatch, so the messages carry them); says so when there are no lines."""
    from scoring.cycle import recommendations_stage

    data, lines = recommendations_stage()
    return StageResult(data, lines)


def stage_dispatch(options: CycleOptions) -> StageResult:
    """One cycle of every active campaign (seeded from the sources file's "campaigns" entry
    when given), delivered, with counts per campaign, rule, arm, channel and reason."""
    from campaigns.cycle import dispatch_stage

    data, lines = dispatch_stage(campaigns_spec=options.sources.campaigns)
    return StageResult(data, lines)


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


STAGES: list[tuple[str, Stage]] = [
    ("import", stage_import),
    ("contacts", stage_contacts),
    ("scoring", stage_scoring),
    ("recommendations", stage_recommendations),
    ("dispatch", stage_dispatch),
    ("simulate", stage_simulate),
    ("uplift", stage_uplift),
]


def run_cycle(
    options: CycleOptions,
    *,
    only: list[str] | None = None,
    on_stage: Callable[[str, StageResult], None] | None = None,
) -> dict[str, Any]:
    """Run the stages in order (or only those named) and return {stage: data}."""
    names = [name for name, _ in STAGES]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise CycleError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(names)}")
    results: dict[str, Any] = {}
    for name, stage in STAGES:
        if only and name not in only:
            continue
        result = stage(options)
        if result is None:
            continue
        results[name] = result.data
        if on_stage:
            on_stage(name, result)
    return results
