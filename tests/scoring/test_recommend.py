"""Product recommendations (scoring.ml.recommend): pure code, no database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.ml.recommend import (
    BOUGHT_TOGETHER,
    BUY_AGAIN,
    DEFAULT_METHOD,
    METHODS,
    POPULAR,
    SOURCE_NAMES,
    InteractionError,
    fit_recommender,
    recommend_top_n,
)

BREAD, BUTTER, JAM, COFFEE, MILK = range(5)
NAMES = np.array(["bread", "butter", "jam", "coffee", "milk"])


def lines(baskets: dict[int, list[int]], date: str = "2025-03-01") -> pd.DataFrame:
    rows = [(customer, product) for customer, basket in baskets.items() for product in basket]
    return pd.DataFrame(
        {
            "customer": [c for c, _ in rows],
            "product": [p for _, p in rows],
            "date": pd.Timestamp(date),
        }
    )


# Five customers: bread goes with butter (3 of bread's 4 buyers) far more than with jam (1).
SHOP = {
    0: [BREAD, BUTTER],
    1: [BREAD, BUTTER, JAM],
    2: [BREAD, BUTTER],
    3: [COFFEE, MILK, JAM],
    4: [BREAD],
}


def fit(frame=None, *, n_customers=6, n_products=5, **options):
    options.setdefault("method", "item_cooccurrence")
    return fit_recommender(
        interactions=lines(SHOP) if frame is None else frame,
        n_customers=n_customers,
        n_products=n_products,
        product_ids=NAMES if n_products == 5 else None,
        **options,
    )


def random_shop(seed=0, n_customers=300, n_products=60, n_lines=2_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, n_products + 1)
    return pd.DataFrame(
        {
            "customer": rng.integers(0, n_customers, n_lines),
            "product": rng.choice(n_products, size=n_lines, p=weight / weight.sum()),
            "date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 90, n_lines), "D"),
        }
    )


def test_bread_buyer_is_recommended_butter_then_jam_by_cosine_co_purchase():
    model = fit(exclude_bought=True)
    recs = recommend_top_n(model, np.array([4, 3]), n=2)
    assert NAMES[recs.product_idx[0]].tolist() == ["butter", "jam"]
    # cosine = customers who bought both / sqrt(buyers of each): 3/sqrt(4*3), 1/sqrt(4*2)
    np.testing.assert_allclose(recs.score[0], [3 / np.sqrt(12), 1 / np.sqrt(8)], rtol=1e-6)
    # The coffee, milk and jam buyer: jam's neighbours, butter (1/sqrt(6)) before bread (1/sqrt(8))
    assert NAMES[recs.product_idx[1]].tolist() == ["butter", "bread"]
    np.testing.assert_allclose(recs.score[1], [1 / np.sqrt(6), 1 / np.sqrt(8)], rtol=1e-6)
    assert not recs.fallback.any()


def test_by_default_a_bought_product_competes_with_its_neighbours():
    recs = recommend_top_n(fit(), np.array([4]), n=3)
    assert NAMES[recs.product_idx[0]].tolist() == ["bread", "butter", "jam"]
    np.testing.assert_allclose(recs.score[0], [1.0, 3 / np.sqrt(12), 1 / np.sqrt(8)], rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_inactive_products_are_never_recommended(method):
    active = np.ones(5, dtype=bool)
    active[[BUTTER, BREAD]] = False
    recs = recommend_top_n(fit(method=method, active=active), np.arange(6), n=5)
    listed = recs.product_idx[recs.product_idx >= 0]
    assert not np.isin(listed, [BUTTER, BREAD]).any()
    # Only three products are still sold, so nobody can get more than three.
    assert ((recs.product_idx >= 0).sum(axis=1) <= 3).all()


@pytest.mark.parametrize("method", METHODS)
def test_inactive_products_are_never_recommended_in_a_larger_shop(method):
    active = np.random.default_rng(3).random(60) > 0.3
    model = fit(random_shop(), n_customers=300, n_products=60, method=method, active=active)
    recs = recommend_top_n(model, np.arange(300), n=10)
    assert (recs.product_idx >= 0).all()
    assert model.active[recs.product_idx].all()


@pytest.mark.parametrize("method", ["item_cooccurrence", "buy_again"])
def test_customer_with_no_history_gets_the_popular_products(method):
    recs = recommend_top_n(fit(method=method), np.array([5]), n=3)
    # Buyers: bread 4, butter 3, jam 2 (coffee and milk 1 each)
    assert NAMES[recs.product_idx[0]].tolist() == ["bread", "butter", "jam"]
    np.testing.assert_array_equal(recs.score[0], [4.0, 3.0, 2.0])
    assert recs.fallback[0].all()


def test_customer_below_min_history_gets_the_popular_products():
    recs = recommend_top_n(fit(min_history=2, exclude_bought=True), np.array([4, 0]), n=2)
    # Customer 4 bought only bread: popular list, without bread as bought products are excluded
    assert NAMES[recs.product_idx[0]].tolist() == ["butter", "jam"]
    assert recs.fallback[0].all()
    assert not recs.fallback[1].all()


def test_short_candidate_lists_are_filled_from_popular_without_repeats():
    recs = recommend_top_n(fit(exclude_bought=True), np.array([4]), n=4)
    # Co-purchase gives butter and jam; the rest is popular, skipping bread (bought)
    assert NAMES[recs.product_idx[0]].tolist() == ["butter", "jam", "coffee", "milk"]
    assert recs.fallback[0].tolist() == [False, False, True, True]


def test_excluding_bought_never_recommends_what_the_customer_bought():
    frame = random_shop(seed=2)
    model = fit(frame, n_customers=300, n_products=60, exclude_bought=True)
    recs = recommend_top_n(model, np.arange(300), n=10)
    bought = set(zip(frame["customer"], frame["product"], strict=True))
    offered = {(c, p) for c, row in enumerate(recs.product_idx) for p in row if p >= 0}
    assert not bought & offered


def test_buy_again_ranks_the_most_bought_then_the_most_recent():
    frame = pd.concat(
        [
            lines({0: [JAM, JAM, JAM]}, "2025-01-01"),
            lines({0: [BUTTER]}, "2025-01-02"),
            lines({0: [MILK]}, "2025-02-01"),
            lines({1: [BREAD, BREAD, COFFEE]}, "2025-01-01"),
        ]
    )
    recs = recommend_top_n(fit(frame, method="buy_again"), np.array([0]), n=4)
    assert NAMES[recs.product_idx[0]].tolist() == ["jam", "milk", "butter", "bread"]
    assert recs.fallback[0].tolist() == [False, False, False, True]


def test_default_lists_bought_products_then_bought_together_then_popular():
    recs = recommend_top_n(fit(method=DEFAULT_METHOD), np.array([4, 1]), n=5)
    # Customer 4 bought bread: bread, then its neighbours butter and jam, then popular coffee...
    assert NAMES[recs.product_idx[0]].tolist() == ["bread", "butter", "jam", "coffee", "milk"]
    together, popular = [BOUGHT_TOGETHER] * 2, [POPULAR] * 2
    assert recs.source[0].tolist() == [BUY_AGAIN, *together, *popular]
    # Customer 1 bought bread, butter and jam (once each): those first, nothing repeated
    assert sorted(NAMES[recs.product_idx[1, :3]]) == ["bread", "butter", "jam"]
    assert recs.source[1, :3].tolist() == [BUY_AGAIN] * 3
    assert len(set(recs.product_idx[1])) == 5


def test_trending_counts_only_the_last_days():
    frame = pd.concat(
        [
            lines({0: [BREAD], 1: [BREAD], 2: [BREAD]}, "2025-01-01"),
            lines({3: [COFFEE], 4: [COFFEE]}, "2025-03-01"),
        ]
    )
    trending = recommend_top_n(fit(frame, method="trending", trending_days=30), [5], n=1)
    popular = recommend_top_n(fit(frame, method="popular"), [5], n=1)
    assert NAMES[trending.product_idx[0, 0]] == "coffee"
    assert NAMES[popular.product_idx[0, 0]] == "bread"


def test_trending_ties_go_to_the_product_bought_by_more_customers_ever():
    frame = pd.concat(
        [
            lines({0: [MILK, COFFEE], 1: [MILK], 2: [MILK]}, "2025-01-01"),
            lines({4: [JAM], 3: [COFFEE], 2: [MILK]}, "2025-03-01"),
        ]
    )
    recs = recommend_top_n(fit(frame, method="trending", trending_days=30), [5], n=3)
    # One recent buyer each; ever: milk 3, coffee 2, jam 1 (product order would be the reverse)
    assert NAMES[recs.product_idx[0]].tolist() == ["milk", "coffee", "jam"]
    np.testing.assert_array_equal(recs.score[0], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("method", METHODS)
def test_chunking_gives_the_same_result_as_one_chunk(method):
    model = fit(random_shop(seed=1), n_customers=300, n_products=60, method=method)
    whole = recommend_top_n(model, np.arange(300), n=10, chunk=10_000)
    chunked = recommend_top_n(model, np.arange(300), n=10, chunk=7)
    np.testing.assert_array_equal(whole.product_idx, chunked.product_idx)
    np.testing.assert_array_equal(whole.score, chunked.score)
    np.testing.assert_array_equal(whole.fallback, chunked.fallback)


@pytest.mark.parametrize("method", METHODS)
def test_top_n_is_sorted_best_first_and_has_no_duplicates(method):
    model = fit(random_shop(seed=4), n_customers=300, n_products=60, method=method)
    recs = recommend_top_n(model, np.arange(300), n=10)
    ordered = np.sort(recs.product_idx, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all()
    for code in SOURCE_NAMES:  # each source's scores, best first
        scores = np.where(recs.source == code, recs.score, -np.inf)
        for row in scores:
            kept = row[np.isfinite(row)]
            assert (np.diff(kept) <= 0).all()
    # Sources fill in order: bought before, bought together, then popular filler.
    assert (np.diff(recs.source.astype(int), axis=1) >= 0).all()


def test_the_version_names_the_method_and_changes_with_the_data():
    first = fit()
    again = fit()
    other = fit(lines({**SHOP, 4: [BREAD, JAM]}))
    assert first.version.startswith("item_cooccurrence-")
    assert first.version == again.version
    assert first.version != other.version


def test_a_bad_line_is_refused_naming_the_row_and_field():
    frame = lines(SHOP)
    frame.loc[3, "product"] = 9
    with pytest.raises(InteractionError, match=r"row 3: field 'product' is 9; expected .* 0 to 4"):
        fit(frame)
    frame = lines(SHOP)
    frame["date"] = frame["date"].astype(object)
    frame.loc[2, "date"] = "not a date"
    with pytest.raises(InteractionError, match=r"row 2: field 'date'"):
        fit(frame)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="is not one of buy_again_then_similar, item_cooccurrence"):
        fit(method="magic")
