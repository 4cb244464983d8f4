"""The demo's sources and campaigns files for tests, without the imports (tests make their own
customers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "demo"


def demo_sources(directory: Path, *, simulate: bool) -> Path:
    """demo/sources.json and demo/campaigns.json copied into `directory`, without imports and,
    unless `simulate`, without the demo's "demo": {"simulate": …} entry."""
    shutil.copy(DEMO / "telco_campaigns.json", directory / "telco_campaigns.json")
    spec = json.loads((DEMO / "telco.json").read_text())
    spec["imports"] = []
    if not simulate:
        del spec["demo"]
    (directory / "sources.json").write_text(json.dumps(spec))
    return directory / "sources.json"
