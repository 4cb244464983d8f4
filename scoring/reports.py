"""Text tables of training results and scoring runs, for commands and the retention cycle."""

from __future__ import annotations

from typing import Any

from scoring.ml.drift import drift_guidance, drift_rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_training_report(report: dict[str, Any]) -> str:
    columns = ["roc_auc", "pr_auc", "brier", "f1", "recall", "top_decile_lift"]
    header = f"{'candidate':<28}" + "".join(f"{c:>16}" for c in columns) + f"{'seconds':>10}"
    lines = [
        f"Label: {report['label']} · {report['rows']:,} rows · "
        f"churn rate {report['positive_rate']:.1%}",
        f"Validation: {report['validation'].get('scheme', report['validation'])}"
        if report.get("validation")
        else "Validation: stratified K-fold, out-of-fold",
        header,
        "-" * len(header),
    ]
    selected = report["selected"]
    for candidate in report["candidates"]:
        mark = " *" if candidate["name"] == selected["name"] else ""
        seconds = candidate.get("fit_seconds", candidate.get("seconds"))
        lines.append(
            f"{(candidate['name'] + mark):<28}"
            + "".join(f"{_fmt(candidate.get(c)):>16}" for c in columns)
            + f"{_fmt(seconds, 1):>10}"
        )
    lines.append(
        f"{'selected, calibrated':<28}" + "".join(f"{_fmt(selected.get(c)):>16}" for c in columns)
    )
    lines.append(
        f"Selected {selected['name']} (by PR-AUC) → model {selected['version']} "
        f"[{selected['status']}], threshold {selected['threshold']:.3f} "
        f"({selected['threshold_method']})"
    )
    decision = report.get("champion_challenger", {}).get("decision")
    if decision:
        lines.append(f"Champion/challenger: {decision}")
    return "\n".join(lines)


def format_run(run: Any) -> str:
    tiers = " · ".join(f"{name} {count:,}" for name, count in run.tier_counts.items())
    not_scorable = getattr(run, "customers_not_scorable", 0)
    if not_scorable:
        tiers += f" · not scorable {not_scorable:,} (no order before the scoring date)"
    drift = drift_guidance(run.drift.get("status")) if run.drift else drift_guidance(None)
    rows = drift_rows(run.drift) if run.drift else []
    worst = ", ".join(f"{r.name} {r.psi:.2f} ({r.word})" for r in rows[:4])
    return (
        f"Scored {run.customers_scored:,} of {run.customers_total:,} customers with model "
        f"{run.model.version} as of {run.as_of:%Y-%m-%d} in {run.timings.get('seconds', 0):.1f} s\n"
        f"  tiers: {tiers}\n  drift: {drift}" + (f"\n  PSI: {worst}" if worst else "")
    )
