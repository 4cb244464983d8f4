"""The retention cycle: every stage of the service's main job, run in order.

Each stage is a function taking the cycle's options and returning a JSON-safe dict of its
counts and timings (printed as one key of `retention_cycle --json`) plus a human summary.
STAGES lists them in order: import, scoring, dispatch, uplift; each app owns its stage's body
(scoring/cycle.py, campaigns/cycle.py) and this module only wires them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from customers.importers import ImportError_, import_file
from customers.management.import_command import format_summary
from customers.selectors import customers_totals


class CycleError(Exception):
    """A stage could not run; the message says which and why."""


@dataclass
class CycleOptions:
    sources: Path | None = None
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageResult:
    data: dict[str, Any]
    lines: list[str]


Stage = Callable[[CycleOptions], StageResult]

IMPORT_KEYS = {"kind", "path", "map", "date_format", "delimiter", "sheet", "create_customers"}


def load_sources(path: Path) -> list[dict[str, Any]]:
    """Read a sources file: {"imports": [{"kind", "path", "map"?, "date_format"?, …}]}.

    Relative paths are relative to the sources file.
    """
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CycleError(f"sources file {path}: {exc}") from exc
    imports = spec.get("imports")
    if not isinstance(imports, list):
        raise CycleError(f"sources file {path}: expected an 'imports' list")
    for index, item in enumerate(imports):
        unknown = set(item) - IMPORT_KEYS
        if unknown or not {"kind", "path"} <= set(item):
            raise CycleError(
                f"sources file {path}: import #{index} needs kind and path and accepts only "
                f"{', '.join(sorted(IMPORT_KEYS))} (got {', '.join(sorted(item))})"
            )
        if item["kind"] not in ("customers", "orders", "events"):
            raise CycleError(f"sources file {path}: import #{index}: unknown kind {item['kind']}")
        item["path"] = (path.parent / item["path"]).resolve()
    return imports


def stage_import(options: CycleOptions) -> StageResult:
    started = time.perf_counter()
    files: list[dict[str, Any]] = []
    lines: list[str] = []
    sources = options.sources or (
        Path(settings.RETENTION_SOURCES) if settings.RETENTION_SOURCES else None
    )
    for item in load_sources(sources) if sources else []:
        try:
            summary = import_file(
                kind=item["kind"],
                path=item["path"],
                mapping=item.get("map"),
                date_format=item.get("date_format"),
                delimiter=item.get("delimiter"),
                sheet=item.get("sheet"),
                create_customers=item.get("create_customers", False),
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


def _sources(options: CycleOptions) -> Path | None:
    return options.sources or (
        Path(settings.RETENTION_SOURCES) if settings.RETENTION_SOURCES else None
    )


def stage_scoring(options: CycleOptions) -> StageResult:
    """Train if there is no active model, then score every customer as of the cycle's date."""
    from scoring.cycle import scoring_stage
    from scoring.services import ScoringError, TrainingError

    sources = _sources(options)
    config = json.loads(sources.read_text()).get("scoring", {}) if sources else {}
    try:
        data, lines = scoring_stage(config=config, progress=options.progress)
    except (ScoringError, TrainingError) as exc:
        raise CycleError(f"scoring: {exc}") from exc
    return StageResult(data, lines)


def stage_dispatch(options: CycleOptions) -> StageResult:
    """One cycle of every active campaign (seeded from the sources file's "campaigns" entry
    when given), delivered, with counts per campaign, rule, arm, channel and reason."""
    from campaigns.cycle import dispatch_stage

    sources = options.sources or (
        Path(settings.RETENTION_SOURCES) if settings.RETENTION_SOURCES else None
    )
    data, lines = dispatch_stage(sources=sources)
    return StageResult(data, lines)


def stage_uplift(options: CycleOptions) -> StageResult:
    """Snapshot every campaign's uplift (and the program report); with the sources file's
    "uplift": {"simulate": …} (demo only), first simulate synthetic outcomes."""
    from campaigns.cycle import uplift_stage
    from demo.cycle import simulate_stage

    simulated, simulated_lines = simulate_stage(sources=_sources(options), extra=options.extra)
    data, lines = uplift_stage(sources=_sources(options), extra=options.extra)
    return StageResult({**simulated, **data}, simulated_lines + lines)


STAGES: list[tuple[str, Stage]] = [
    ("import", stage_import),
    ("scoring", stage_scoring),
    ("dispatch", stage_dispatch),
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
        results[name] = result.data
        if on_stage:
            on_stage(name, result)
    return results
