"""The shared body of import_customers, import_orders and import_events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.importers import ImportError_, ImportSummary, import_file, parse_mapping
from customers.line_import import ORDER_LINE_SPEC, summary_extra
from customers.validation import SPECS, MappingError


class ImportCommand(BaseCommand):
    kind = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields = ", ".join(f.name for f in SPECS[self.kind].fields)
        self.help = (
            f"Import {self.kind} from a CSV (any delimiter) or XLSX file, upserting by external "
            f"id. Fields: {fields}."
        )
        if self.kind == "orders":
            lines = ", ".join(f.name for f in ORDER_LINE_SPEC.fields)
            self.help += (
                " A line-level file (one row per order line, grouped by its order column) is "
                f"recognised by its columns; its fields: {lines}. See docs/importing.md."
            )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="CSV, TSV, whitespace-separated or XLSX file")
        parser.add_argument(
            "--map",
            nargs="+",
            metavar="SOURCE=FIELD",
            help="Map a file column to a field, e.g. --map customerID=external_id",
        )
        parser.add_argument(
            "--date-format", help="strftime format of date columns, e.g. %%Y%%m%%d (default: ISO)"
        )
        parser.add_argument("--delimiter", help="Column delimiter (default: detected)")
        parser.add_argument("--sheet", help="XLSX sheet name (default: the first)")
        parser.add_argument(
            "--strict", action="store_true", help="Any bad row rejects the whole file"
        )
        parser.add_argument(
            "--rejects", type=Path, help="Where to write bad rows (default: PATH.rejects.csv)"
        )
        parser.add_argument(
            "--rejects-full-rows",
            action="store_true",
            help="Keep name, email and phone (columns and values) in the rejects file and "
            "messages; by default they are left out (personal data)",
        )
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar")
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON")
        if self.kind in ("orders", "events"):
            parser.add_argument(
                "--create-customers",
                action="store_true",
                help="Create customers that do not exist yet (default: such rows are rejected)",
            )
        if self.kind == "orders":
            parser.add_argument("--currency", default="USD", help="Currency when none is given")
            parser.add_argument(
                "--guest-orders",
                choices=["reject", "skip"],
                default="reject",
                help="Line-level files: lines without a customer id are rejected (written to "
                "the rejects file, the default) or skipped (only counted)",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        defaults = {"currency": options["currency"]} if self.kind == "orders" else None
        try:
            summary = import_file(
                kind=self.kind,
                path=options["path"],
                mapping=parse_mapping(options["map"]),
                date_format=options["date_format"],
                delimiter=options["delimiter"],
                sheet=options["sheet"],
                strict=options["strict"],
                create_customers=options.get("create_customers", False),
                rejects_path=options["rejects"],
                rejects_full_rows=options["rejects_full_rows"],
                defaults=defaults,
                progress=not options["no_progress"] and not options["json"],
                guest_orders=options.get("guest_orders", "reject"),
            )
        except (ImportError_, MappingError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary.to_dict(), indent=2))
        else:
            self.stdout.write(format_summary(summary))


def format_summary(summary: ImportSummary) -> str:
    lines = [
        f"Imported {summary.kind} from {summary.path}: {summary.rows:,} rows in "
        f"{summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s)",
        f"  created {summary.created:,} · updated {summary.updated:,} · "
        f"unchanged {summary.unchanged:,} · rejected {summary.rejected:,}",
    ]
    if summary.customers_created:
        lines.append(f"  customers created: {summary.customers_created:,}")
    lines += summary_extra(summary)
    if summary.derived_ids:
        lines.append("  the file has no external ids: ids were derived from customer and time")
    for reject in summary.first_rejects[:5]:
        lines.append(f"  line {reject['line']}: {reject['reason']}")
    if summary.rejects_path:
        lines.append(f"  rejected rows written to {summary.rejects_path}")
    return "\n".join(lines)
