"""Uplift of any treated-vs-control file (CSV with any delimiter, or .xlsx), no database.

Thin: read and validate the file here, compute in campaigns.uplift (proportions, means).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.uplift.means import MeanUplift, mean_difference
from campaigns.uplift.proportions import ProportionUplift, is_binary, proportion_difference
from common.tables import TableError, read_table

MAX_LISTED_VALUES = 20


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return read_table(path)
    except TableError as exc:
        raise CommandError(str(exc)) from exc


def _require_column(frame: pd.DataFrame, column: str, option: str) -> None:
    if column not in frame.columns:
        available = ", ".join(str(name) for name in frame.columns)
        raise CommandError(f"{option}: no column {column!r} in the file; available: {available}")


class Command(BaseCommand):
    help = (
        "Treated vs control uplift of an outcome column in a CSV/XLSX file: n and mean per arm, "
        "difference with its confidence interval, p-value, relative lift. A 0/1 outcome gets a "
        "difference in proportions; any other numeric outcome a Welch difference in means."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="CSV (any delimiter) or .xlsx file")
        parser.add_argument("--arm-column", required=True, help="column naming each row's arm")
        parser.add_argument("--treatment", required=True, help="arm value of treated rows")
        parser.add_argument("--control", required=True, help="arm value of control rows")
        parser.add_argument("--outcome", required=True, help="outcome column (0/1 or numeric)")
        parser.add_argument(
            "--interval",
            choices=["newcombe", "normal"],
            default="newcombe",
            help=(
                "newcombe (default): Newcombe score interval for 0/1 outcomes, Welch-Satterthwaite "
                "t for continuous ones; normal: normal approximation (Welch SE) for both"
            ),
        )
        parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        arm_column: str = options["arm_column"]
        outcome_column: str = options["outcome"]
        frame = _read_table(path)
        _require_column(frame, arm_column, "--arm-column")
        _require_column(frame, outcome_column, "--outcome")

        # Arm values are compared as text so "1" on the command line matches a numeric 1.
        arms = frame[arm_column].astype("string").str.strip()
        found = sorted(arms.dropna().unique().tolist())
        for option in ("treatment", "control"):
            options[option] = options[option].strip()
            if options[option] not in found:
                listed = ", ".join(repr(v) for v in found[:MAX_LISTED_VALUES])
                more = (
                    f" (and {len(found) - MAX_LISTED_VALUES} more)"
                    if len(found) > MAX_LISTED_VALUES
                    else ""
                )
                raise CommandError(
                    f"--{option} {options[option]!r} not found in column {arm_column!r}; "
                    f"values found: {listed}{more}"
                )
        treated_raw = frame.loc[arms == options["treatment"], outcome_column]
        control_raw = frame.loc[arms == options["control"], outcome_column]
        treated = self._numeric(treated_raw, outcome_column)
        control = self._numeric(control_raw, outcome_column)

        result: ProportionUplift | MeanUplift
        try:
            if is_binary(pd.concat([treated, control])):
                result = proportion_difference(
                    treated_successes=int(treated.sum()),
                    treated_n=len(treated),
                    control_successes=int(control.sum()),
                    control_n=len(control),
                    interval=options["interval"],
                    alpha=options["alpha"],
                )
                treated_mean, control_mean = result.treated_rate, result.control_rate
            else:
                result = mean_difference(
                    treated=treated.to_numpy(),
                    control=control.to_numpy(),
                    interval="normal" if options["interval"] == "normal" else "welch_t",
                    alpha=options["alpha"],
                )
                treated_mean, control_mean = result.treated_mean, result.control_mean
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        payload = {
            "treatment": {"n": result.treated_n, "mean": treated_mean},
            "control": {"n": result.control_n, "mean": control_mean},
            "difference": result.difference,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "p_value": result.p_value,
            "relative_lift": result.relative_lift,
            "method": result.method,
        }
        if options["json"]:
            self.stdout.write(json.dumps(payload))
            return
        self._print_report(options, result, payload)

    @staticmethod
    def _numeric(values: pd.Series, column: str) -> pd.Series:
        numeric = pd.to_numeric(values, errors="coerce")
        bad = values[numeric.isna() & values.notna()]
        if not bad.empty:
            examples = ", ".join(repr(v) for v in bad.astype(str).unique()[:5])
            raise CommandError(f"--outcome column {column!r} is not numeric: found {examples}")
        if numeric.isna().any():
            raise CommandError(
                f"--outcome column {column!r} has {int(numeric.isna().sum())} missing values in "
                "the compared arms; fill them (e.g. 0 revenue) or drop those rows first"
            )
        return numeric.astype("float64")

    def _print_report(
        self,
        options: dict[str, Any],
        result: ProportionUplift | MeanUplift,
        payload: dict[str, Any],
    ) -> None:
        binary = isinstance(result, ProportionUplift)
        label = "rate" if binary else "mean"
        level = f"{100 * (1 - result.alpha):g}%"
        width = max(len(options["treatment"]), len(options["control"]))
        lines = [
            f"outcome {options['outcome']!r}: "
            + ("0/1, difference in proportions" if binary else "continuous, difference in means"),
            f"treatment {options['treatment']:<{width}}  n={payload['treatment']['n']:>9,}  "
            f"{label}={payload['treatment']['mean']:.6f}",
            f"control   {options['control']:<{width}}  n={payload['control']['n']:>9,}  "
            f"{label}={payload['control']['mean']:.6f}",
            f"difference {result.difference:+.6f}  {level} CI [{result.ci_low:+.6f}, "
            f"{result.ci_high:+.6f}]",
            f"p-value {result.p_value:.4g}",
        ]
        if result.relative_lift is None:
            lines.append("relative lift: undefined (control mean is 0)")
        elif result.relative_lift_ci_low is not None and result.relative_lift_ci_high is not None:
            lines.append(
                f"relative lift {result.relative_lift:+.2%}  {level} CI "
                f"[{result.relative_lift_ci_low:+.2%}, {result.relative_lift_ci_high:+.2%}]"
            )
        else:
            lines.append(f"relative lift {result.relative_lift:+.2%}")
        lines.append(f"method: {result.method}")
        self.stdout.write("\n".join(lines))
