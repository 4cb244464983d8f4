"""churn_export / churn_import move a model between installations with its checksum, and
churn_train --transfer-from records the source and every method's figures on the registry."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from customers.importers import import_file
from scoring.models import ChurnModel

pytestmark = pytest.mark.django_db


def _shop(tmp_path: Path, *, n: int = 200, seed: int = 0) -> None:
    """Customers ordering at their own rate through 2023 (Poisson); slow ones churn."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2023-01-01")
    for i in range(n):
        rate = rng.gamma(1.5, 1.2) / 30  # orders per day
        t, k = float(rng.exponential(1 / rate)), 0
        while t < 364:
            when = start + pd.Timedelta(days=t)
            rows.append([f"o{i}-{k}", f"c{i}", when.isoformat(), round(20 + 30 * rng.random(), 2)])
            t, k = t + float(rng.exponential(1 / rate)), k + 1
    pd.DataFrame(rows, columns=["order_id", "customer_id", "placed_at", "amount"]).to_csv(
        tmp_path / "orders.csv", index=False
    )
    import_file(kind="orders", path=tmp_path / "orders.csv", create_customers=True)


def _train(*extra: str) -> ChurnModel:
    call_command(
        "churn_train",
        "--as-of",
        "2023-10-01",
        "--horizon",
        "90",
        "--candidates",
        "lr_balanced",
        "--folds",
        "3",
        *extra,
        stdout=StringIO(),
        stderr=StringIO(),
    )
    return ChurnModel.objects.order_by("-created_at", "-pk").first()  # type: ignore[return-value]


def test_export_import_and_transfer_from_a_file_and_the_registry(
    tmp_path: Path, artifact_dir: Path
) -> None:
    _shop(tmp_path)
    source = _train()
    out = tmp_path / "export"
    call_command("churn_export", source.version, str(out), stdout=StringIO())
    meta = json.loads((out / f"{source.version}.json").read_text())
    assert meta["sha256"] == source.artifact_sha256
    assert (out / meta["artifact"]).exists()
    with pytest.raises(CommandError, match="already registered"):
        call_command("churn_import", str(out / f"{source.version}.json"), stdout=StringIO())

    # Another installation: the model is not registered there.
    ChurnModel.objects.filter(pk=source.pk).delete()
    call_command("churn_import", str(out / f"{source.version}.json"), stdout=StringIO())
    imported = ChurnModel.objects.get(version=source.version)
    assert imported.status == "candidate"
    assert imported.artifact_sha256 == source.artifact_sha256
    assert imported.transfer["imported_from"].endswith(".json")

    from_file = _train("--transfer-from", str(out / f"{source.version}.json"))
    record = from_file.transfer
    assert record["source"] == {
        "kind": "file",
        "path": str(out / f"{source.version}.json"),
        "version": source.version,
        "sha256": source.artifact_sha256,
    }
    assert set(record["scores"]) == {"target_only", "source_score", "prior"}
    assert record["selected"] in record["scores"]
    assert "recency_days" in record["columns"]

    from_registry = _train("--transfer-from", imported.version)
    assert from_registry.transfer["source"]["kind"] == "registry"
    with pytest.raises(CommandError, match="no registered model of that version"):
        _train("--transfer-from", "m-nope")
    # A tampered artifact is refused before anything is loaded or registered.
    ChurnModel.objects.filter(pk=imported.pk).delete()
    artifact = out / f"{source.version}.skops"
    artifact.write_bytes(artifact.read_bytes() + b"x")
    with pytest.raises(CommandError, match="SHA-256"):
        call_command("churn_import", str(out / f"{source.version}.json"), stdout=StringIO())
    assert not ChurnModel.objects.filter(version=source.version).exists()
