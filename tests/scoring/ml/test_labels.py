import numpy as np
import pandas as pd
import pytest

from scoring.ml.labels import behaviour_labels, parse_explicit_label


def test_explicit_labels_accept_common_spellings():
    values = ["Yes", "no", " Y ", "n", "1", "0", 1, 0, True, False, "TRUE", "false"]
    assert parse_explicit_label(values=values).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def test_explicit_labels_name_unrecognised_values():
    with pytest.raises(ValueError, match="'maybe'") as err:
        parse_explicit_label(values=pd.Series(["Yes", "maybe", None, "No"]))
    assert "<missing>" in str(err.value)


def test_behaviour_labels_on_hand_made_orders():
    cutoff = pd.Timestamp("2024-03-01", tz="UTC")
    ts = lambda d: pd.Timestamp(d, tz="UTC")  # noqa: E731
    orders = pd.DataFrame(
        {
            "customer_id": ["kept", "kept", "gone", "new", "late", "refund_only", "edge"],
            "placed_at": [
                ts("2024-01-05"),
                ts("2024-03-10"),
                ts("2024-02-01"),
                ts("2024-03-05"),
                ts("2024-01-01"),
                ts("2024-01-01"),
                ts("2024-02-01"),
            ],
            "status": ["completed"] * 5 + ["refunded", "completed"],
        }
    )
    # "late" orders again only after the horizon; "edge" exactly at cutoff + horizon.
    orders = pd.concat(
        [
            orders,
            pd.DataFrame(
                {
                    "customer_id": ["late", "edge"],
                    "placed_at": [ts("2024-05-01"), cutoff + pd.Timedelta(days=30)],
                    "status": ["completed", "completed"],
                }
            ),
        ]
    )
    labels = behaviour_labels(orders=orders, cutoff=cutoff, horizon_days=30).as_series()
    assert labels.to_dict() == {"edge": 1, "gone": 1, "kept": 0, "late": 1}
    assert labels.dtype == np.int8
