"""Order statistics kept between runs (PostgreSQL): a night reads the orders of the customers
whose statistics are stale only, and scores exactly as a run reading every order; an order
written while a run reads never leaves stale statistics behind."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db import connection, transaction

from customers.models import Customer, Order
from customers.selectors import orders_frame_for_ids
from scoring.ml.features import STATISTIC_COLUMNS, as_utc, order_statistics
from scoring.models import CustomerScore, OrderStatistics, OrderStatisticsMark
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import parse_as_of, scoring_run_execute
from scoring.services.statistics import (
    PACKED,
    statistics_snapshot,
    statistics_store,
    statistics_usable,
)
from scoring.services.training import churn_model_train
from tests.scoring.services.test_not_scorable import shoppers_and_strangers

# Each statement commits: the triggers' marks and the snapshots are other transactions'.
pytestmark = pytest.mark.django_db(transaction=True)

LAST_NIGHT = parse_as_of("2024-09-30")


def statistics_unpack(packed: bytes) -> dict[str, float]:
    """One stored record's statistics by name (as scoring.services.statistics packs them)."""
    record = np.frombuffer(bytes(packed), dtype=PACKED)[0]
    return {name: record[name].item() for name in PACKED.names or ()}


TONIGHT = parse_as_of("2024-10-01")


@pytest.fixture
def behaviour_model(require_postgres: None, artifact_dir: Path) -> None:
    shoppers_and_strangers()
    data = training_data_from_database(as_of=parse_as_of("2024-07-01"), horizon_days=90)
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)


def _scores(run_key: str) -> dict[int, tuple[float | None, str]]:
    rows = CustomerScore.objects.filter(run__run_key=run_key)
    return {c: (p, t) for c, p, t in rows.values_list("customer_id", "probability", "tier")}


def _computed_as_of(as_of: datetime) -> set[int]:
    basis = as_utc(as_of).value
    return set(OrderStatistics.objects.filter(basis_ns=basis).values_list("customer_id", flat=True))


def test_a_night_reads_only_the_stale_customers_orders_and_scores_as_if_it_read_all(
    behaviour_model: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SCORING_CHUNK_CUSTOMERS = 100
    assert scoring_run_execute(as_of=LAST_NIGHT, run_key="last-night") is not None
    # The first night computed everyone's statistics from their orders and kept them.
    assert _computed_as_of(LAST_NIGHT) == set(Customer.objects.values_list("pk", flat=True))
    assert not OrderStatisticsMark.objects.exists()  # every order was read: no mark left

    # During the day one shopper orders: the trigger marks them.
    shopper = Customer.objects.get(external_id="s0001")
    Order.objects.create(
        external_id="today",
        customer=shopper,
        placed_at=LAST_NIGHT + timedelta(hours=12),
        amount=Decimal("55.00"),
    )
    assert OrderStatisticsMark.objects.filter(customer_id=shopper.pk).count() == 1

    read: list[int] = []
    real = orders_frame_for_ids

    def spy(**where: Any) -> pd.DataFrame:
        frame = real(**where)
        read.extend(frame["customer_id"].unique().tolist())
        return frame

    monkeypatch.setattr("scoring.services.runs.orders_frame_for_ids", spy)
    assert scoring_run_execute(as_of=TONIGHT, run_key="tonight") is not None
    recomputed = _computed_as_of(TONIGHT)
    # Tonight: the shopper (a new order) and those whose orders crossed a window edge in the
    # day, no one else; their orders were the only ones read.
    assert shopper.pk in recomputed
    assert 0 < len(recomputed) < 300 / 4
    assert set(read) <= recomputed
    assert not OrderStatisticsMark.objects.exists()

    # The same night reading every order: the same scores, to the last bit.
    monkeypatch.undo()
    settings.SCORING_ORDER_STATISTICS = False
    assert scoring_run_execute(as_of=TONIGHT, run_key="tonight-every-order") is not None
    assert _scores("tonight") == _scores("tonight-every-order")
    assert _scores("tonight")[shopper.pk] != _scores("last-night")[shopper.pk]


def _statistics_of(customer: Customer, as_of: datetime) -> pd.DataFrame:
    orders = orders_frame_for_ids(ids=[customer.pk])
    return order_statistics(orders=orders, index=pd.Index([customer.pk]), as_of=as_of)


def _usable(customer: Customer) -> bool:
    found = statistics_usable(first_id=customer.pk, last_id=customer.pk, as_of=TONIGHT)
    return customer.pk in found.index


def test_an_order_committed_after_a_runs_snapshot_keeps_its_mark(require_postgres: None) -> None:
    customer = Customer.objects.create(external_id="c1")
    first = Order.objects.create(
        external_id="o1", customer=customer, placed_at=datetime(2024, 9, 1, tzinfo=UTC), amount=10
    )
    marks = OrderStatisticsMark.objects.filter(customer_id=customer.pk)
    row = OrderStatistics.objects.filter(customer_id=customer.pk)
    assert marks.count() == 1 and not row.exists()  # marked by the insert's trigger

    before = statistics_snapshot()
    assert statistics_store(statistics=_statistics_of(customer, TONIGHT), snapshot=before) == 1
    assert (
        not marks.exists()
        and statistics_unpack(row.get().packed)["orders_all"] == 1
        and _usable(customer)
    )

    # A run took its snapshot and read the orders; then a second order committed.
    read_at = statistics_snapshot()
    stale = _statistics_of(customer, TONIGHT)
    Order.objects.create(
        external_id="o2", customer=customer, placed_at=datetime(2024, 9, 2, tzinfo=UTC), amount=5
    )
    assert marks.count() == 1 and not _usable(customer)
    statistics_store(statistics=stale, snapshot=read_at)
    assert marks.count() == 1 and not _usable(customer)  # the mark stays: read again

    # Read after the order: stored, the mark gone.
    assert statistics_store(
        statistics=_statistics_of(customer, TONIGHT), snapshot=statistics_snapshot()
    )
    assert (
        not marks.exists()
        and statistics_unpack(row.get().packed)["orders_all"] == 2
        and _usable(customer)
    )

    # Statistics for an earlier date never replace a later date's.
    earlier = _statistics_of(customer, LAST_NIGHT)
    assert statistics_store(statistics=earlier, snapshot=statistics_snapshot()) == 0
    assert row.get().basis_ns == as_utc(TONIGHT).value

    # A changed order (a refund) marks the customer too; a deleted one also drops the row.
    Order.objects.filter(pk=first.pk).update(status="refunded")
    assert marks.count() == 1 and not _usable(customer)
    statistics_store(statistics=_statistics_of(customer, TONIGHT), snapshot=statistics_snapshot())
    assert not marks.exists() and statistics_unpack(row.get().packed)["orders_refunded"] == 1
    Order.objects.filter(pk=first.pk).delete()
    assert marks.count() == 1 and not row.exists()


def test_writers_of_one_customers_orders_do_not_wait_for_each_other(
    require_postgres: None,
) -> None:
    """The marks are appended, never updated: an order written for a customer while another
    transaction holding that customer's new order is still open goes through at once."""
    customer = Customer.objects.create(external_id="c1")
    inserted, release = threading.Event(), threading.Event()

    def long_import() -> None:
        try:
            with transaction.atomic():
                Order.objects.create(
                    external_id="import", customer=customer, placed_at=TONIGHT, amount=10
                )
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=long_import)
    thread.start()
    try:
        assert inserted.wait(10)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '1s'")
            Order.objects.create(external_id="api", customer=customer, placed_at=TONIGHT, amount=5)
    finally:
        release.set()
        thread.join()
    assert OrderStatisticsMark.objects.filter(customer_id=customer.pk).count() == 2


def test_a_runs_end_drops_the_marks_of_deleted_customers_and_everything_when_turned_off(
    require_postgres: None, settings: Any
) -> None:
    from scoring.services.statistics import statistics_tidy

    kept, gone = (Customer.objects.create(external_id=f"c{i}") for i in range(2))
    for customer in (kept, gone):
        Order.objects.create(
            external_id=f"o{customer.pk}", customer=customer, placed_at=LAST_NIGHT, amount=10
        )
    statistics_store(statistics=_statistics_of(kept, TONIGHT), snapshot=statistics_snapshot())
    Order.objects.create(external_id="again", customer=kept, placed_at=LAST_NIGHT, amount=3)
    gone.delete()  # its orders go too: marked, and nothing will ever read them again
    assert statistics_tidy() == 2  # the deleted customer's two marks
    assert list(OrderStatisticsMark.objects.values_list("customer_id", flat=True)) == [kept.pk]
    assert OrderStatistics.objects.filter(customer_id=kept.pk).exists()

    # Turned off, nothing keeps the rows current: they go, marks and all.
    settings.SCORING_ORDER_STATISTICS = False
    assert statistics_tidy() == 1
    assert not OrderStatistics.objects.exists() and not OrderStatisticsMark.objects.exists()


def test_stored_statistics_read_back_exactly_as_computed(require_postgres: None) -> None:
    """Every statistic survives the packed record: stored, then read for the same date, the
    frame equals the computed one value for value (floats to the bit, times as int64)."""
    rng = np.random.default_rng(7)
    customers = Customer.objects.bulk_create(Customer(external_id=f"c{i}") for i in range(40))
    Order.objects.bulk_create(
        Order(
            external_id=f"o{k}",
            customer=customers[int(rng.integers(0, 39))],  # the last customer never orders
            placed_at=datetime(2024, 1, 1, tzinfo=UTC)
            + timedelta(hours=int(rng.integers(0, 6500))),
            amount=float(np.round(rng.gamma(2.0, 30.0), 2)),
            status=str(rng.choice(["completed", "refunded", "cancelled"], p=[0.8, 0.1, 0.1])),
            discount_amount=float(np.round(rng.uniform(0, 5), 2)),
            item_count=int(rng.integers(1, 6)),
        )
        for k in range(400)
    )
    ids = [c.pk for c in customers]
    index = pd.Index(ids, name="customer_id")
    computed = order_statistics(
        orders=orders_frame_for_ids(ids=ids), index=index, as_of=pd.Timestamp(TONIGHT)
    )
    assert statistics_store(statistics=computed, snapshot=statistics_snapshot()) == 40
    read = statistics_usable(first_id=min(ids), last_id=max(ids), as_of=TONIGHT)
    pd.testing.assert_frame_equal(read.loc[:, list(STATISTIC_COLUMNS)], computed, check_names=False)
    assert read.index.tolist() == ids
