"""Product recommendations from the shop's own order lines (pure: numpy, scipy, pandas).

For each customer, the top-N products they are likely to buy next. Five methods share one
fitted-model shape and one chunked scorer, so the service, the benchmark and the tests run the
same code:

* ``buy_again_then_similar`` (the default) — the customer's own most-bought products first,
  then products bought together with what they bought (``item_cooccurrence`` scores, bought
  products excluded), then the fallback list. Best recall@10 and NDCG@10 on UCI Online Retail.
* ``item_cooccurrence`` — item-to-item cosine similarity over the binary customer × product
  matrix, pruned to each product's ``neighbours`` nearest products; a customer's score for a
  product is ``x_user · S`` (the sum of its similarity to everything they bought).
* ``popular`` — products bought by the most customers (Klaviyo's "Popular" feed).
* ``trending`` — products bought by the most customers in the last ``trending_days`` days.
* ``buy_again`` — the customer's own most-bought products (ties: the most recent first).

Decisions (measured in ``bench/recommendations.py``; see docs/recommendations.md):

* Already-bought products: in shop data like UCI's most of what a customer buys next they
  bought before, so the default lists those first. ``item_cooccurrence`` alone keeps them too,
  each with a self-similarity of 1 so it competes with new products on the same scale;
  ``exclude_bought=True`` drops them (for "discover something new" feeds: the best method on
  products new to the customer). ``popular``/``trending`` ignore history unless excluding.
* Customers with fewer than ``min_history`` distinct products get the fallback list (the most
  bought in the last ``fallback_days``); slots a method cannot fill (a short history, few
  neighbours) are filled from it too. ``Recommendations.source`` says what filled each slot.
* Inactive products (no longer sold) are never recommended: they are removed from every
  candidate list (they still count as evidence of taste when they were bought).
* Quantity is not used: a customer buying a 100-pack once made one purchase decision, so the
  matrix counts order lines.
* Memory stays bounded: the similarity is built in blocks of products, pruned per block, and
  customers are scored in chunks; nothing is ever dense over customers × products.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

METHODS = ("buy_again_then_similar", "item_cooccurrence", "popular", "trending", "buy_again")
# The service's default: best recall@10 and NDCG@10 on UCI Online Retail (docs/recommendations.md).
DEFAULT_METHOD = "buy_again_then_similar"
# 20 neighbours per product: on UCI Online Retail 20 beat 50, 100 and 200 for new products
# (recall@10 0.043 vs 0.039-0.036), and scoring touches 20 entries per product bought.
DEFAULT_NEIGHBOURS = 20
# Fallback = trending over the last 30 days: beat all-time popularity on UCI (recall@10 0.040
# vs 0.030).
DEFAULT_FALLBACK_DAYS = 30
# What put a product in a slot (Recommendations.source); -1 = empty slot.
BUY_AGAIN, BOUGHT_TOGETHER, POPULAR = 0, 1, 2
SOURCE_NAMES = {BUY_AGAIN: "bought before", BOUGHT_TOGETHER: "bought together", POPULAR: "popular"}
# 2,000 customers per chunk: the chunk's candidate scores (~1,000 per customer) fit in tens of MB.
DEFAULT_CHUNK = 2_000
# Co-occurrence entries materialised per similarity block before pruning (~12 bytes each).
SIMILARITY_BLOCK_ENTRIES = 10_000_000


class InteractionError(ValueError):
    """The order lines given to the recommender are malformed (names the row and field)."""


@dataclass(frozen=True, eq=False)
class RecommenderModel:
    """A fitted recommender: everything ``recommend_top_n`` needs, nothing from Django."""

    method: str
    version: str
    product_ids: np.ndarray  # label of each product index (e.g. the shop's SKU)
    active: np.ndarray  # bool per product index; False = never recommended
    history: sparse.csr_matrix  # customers × products: line count + recency in [0, 1)
    popularity: np.ndarray  # distinct buyers per product in the fallback window
    popular_rank: np.ndarray  # active product indices, most popular first (the fallback list)
    similarity: sparse.csr_matrix | None  # products × products, pruned (item_cooccurrence)
    exclude_bought: bool
    min_history: int


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Top-N per customer; rows shorter than N are padded with product -1 and score NaN."""

    customer_idx: np.ndarray  # (m,)
    product_idx: np.ndarray  # (m, n) int64, best first
    score: np.ndarray  # (m, n) float64
    source: np.ndarray  # (m, n) int8: BUY_AGAIN, BOUGHT_TOGETHER, POPULAR, or -1 (empty)

    @property
    def fallback(self) -> np.ndarray:
        """Slots filled from the popular (or trending) list."""
        return self.source == POPULAR


def validate_interactions(interactions: pd.DataFrame, *, n_customers: int, n_products: int) -> None:
    """Raise ``InteractionError`` naming the first bad row and field, else return."""
    for column in ("customer", "product", "date"):
        if column not in interactions.columns:
            raise InteractionError(f"interactions: missing column '{column}'")
    limits = {"customer": n_customers, "product": n_products}
    for column, limit in limits.items():
        values = pd.to_numeric(interactions[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0) | (values >= limit) | (values % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InteractionError(
                f"row {row}: field '{column}' is {_shown(interactions[column].iloc[row])}; "
                f"expected a whole number from 0 to {limit - 1}"
            )
    dates = pd.to_datetime(interactions["date"], errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise InteractionError(
            f"row {row}: field 'date' is {_shown(interactions['date'].iloc[row])}; expected a date"
        )


def _shown(value: object) -> str:
    """A cell as a person would write it: 9, 'abc', None (not np.int64(9))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def fit_recommender(
    *,
    interactions: pd.DataFrame,
    n_customers: int,
    n_products: int,
    active: np.ndarray | None = None,
    method: str = DEFAULT_METHOD,
    as_of: pd.Timestamp | None = None,
    trending_days: int = 30,
    fallback_days: int | None = DEFAULT_FALLBACK_DAYS,
    neighbours: int = DEFAULT_NEIGHBOURS,
    exclude_bought: bool = False,
    min_history: int = 1,
    product_ids: np.ndarray | None = None,
) -> RecommenderModel:
    """Fit one method on order lines (columns ``customer``, ``product``, ``date``; indices).

    ``as_of`` (default: the last date) anchors the day windows. The popularity that ranks
    ``popular`` is all history, ``trending`` the last ``trending_days``; every other method
    falls back to the last ``fallback_days`` (None: all history).
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    validate_interactions(interactions, n_customers=n_customers, n_products=n_products)
    active = np.ones(n_products, dtype=bool) if active is None else np.asarray(active, bool)
    if active.shape != (n_products,):
        raise ValueError(f"active has shape {active.shape}; expected ({n_products},)")
    customer = interactions["customer"].to_numpy(dtype=np.int64)
    product = interactions["product"].to_numpy(dtype=np.int64)
    day = _days(interactions["date"])
    as_of_day = int(day.max()) if as_of is None else _days(pd.Series([as_of]))[0]
    history, last_day = _history_matrix(customer, product, day, n_customers, n_products)
    window = {"popular": None, "trending": trending_days}.get(method, fallback_days)
    since = None if window is None else as_of_day - window
    popularity = _buyer_counts(history, last_day, since)
    # Ties (common in a short window) go to the product more customers bought ever, then index.
    ever = _buyer_counts(history, last_day, None)
    ranked = np.lexsort((np.arange(n_products), -ever, -popularity))
    similarity = None
    if method in ("item_cooccurrence", "buy_again_then_similar"):
        self_similarity = method == "item_cooccurrence" and not exclude_bought
        similarity = cosine_similarity(
            history, active=active, neighbours=neighbours, self_similarity=self_similarity
        )
    labels = np.arange(n_products) if product_ids is None else np.asarray(product_ids)
    params = f"{method}|{trending_days}|{fallback_days}|{neighbours}|{exclude_bought}|{min_history}"
    return RecommenderModel(
        method=method,
        version=f"{method}-{_digest(history, active, params)}",
        product_ids=labels,
        active=active,
        history=history,
        popularity=popularity,
        popular_rank=ranked[active[ranked]],
        similarity=similarity,
        exclude_bought=exclude_bought,
        min_history=min_history,
    )


def _days(dates: pd.Series) -> np.ndarray:
    """Whole days since the epoch (time zone dropped: only day differences matter)."""
    values = pd.to_datetime(dates)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[D]").astype(np.int64)


def _history_matrix(
    customer: np.ndarray, product: np.ndarray, day: np.ndarray, n_customers: int, n_products: int
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """customers × products: the number of lines plus a recency fraction in [0, 1).

    The fraction (last purchase day within the whole span) breaks ``buy_again`` ties in
    favour of the more recent product without ever outranking a higher count. Also returns
    each entry's last purchase day (in the matrix's entry order) for windowed popularity.
    """
    key = customer * n_products + product
    order = np.argsort(key)  # equal keys in any order: only their count and max day are used
    key, day = key[order], day[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else key
    counts = np.diff(np.r_[starts, key.size])
    last_day = np.maximum.reduceat(day, starts) if key.size else day
    first = int(day.min()) if key.size else 0
    span = int(day.max()) - first + 1 if key.size else 1
    unique = key[starts]
    # Sorted unique keys are already in CSR order (customer, then product): build it directly.
    indptr = np.searchsorted(unique, np.arange(n_customers + 1, dtype=np.int64) * n_products)
    history = sparse.csr_matrix(
        (counts + (last_day - first) / span, unique % n_products, indptr),
        shape=(n_customers, n_products),
    )
    return history, last_day


def _buyer_counts(
    history: sparse.csr_matrix, last_day: np.ndarray, since: int | None
) -> np.ndarray:
    """Distinct buyers per product (who last bought it after ``since``; None: ever)."""
    products = history.indices if since is None else history.indices[last_day > since]
    return np.bincount(products, minlength=history.shape[1]).astype(np.float64)


def _digest(history: sparse.csr_matrix, active: np.ndarray, params: str) -> str:
    """A short content hash: the same data and parameters give the same model version."""
    digest = hashlib.sha256(params.encode())
    for array in (history.indptr, history.indices, history.data, active):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]


def cosine_similarity(
    history: sparse.csr_matrix,
    *,
    active: np.ndarray,
    neighbours: int = DEFAULT_NEIGHBOURS,
    self_similarity: bool = True,
) -> sparse.csr_matrix:
    """products × products cosine over who bought what, each row pruned to its top neighbours.

    Columns of inactive products are dropped (never a candidate); rows are kept (buying an
    inactive product still says something). Built in blocks of product rows sized so a block's
    raw co-occurrence stays near ``SIMILARITY_BLOCK_ENTRIES`` entries.
    """
    binary = history.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    by_product = binary.T.tocsr()
    buyers = np.diff(by_product.indptr)
    inverse_norm = (1.0 / np.sqrt(np.maximum(buyers, 1))).astype(np.float32)
    n_products = history.shape[1]
    # Upper bound of each row's entries: the products bought by its buyers (capped at all).
    bound = np.minimum(by_product @ np.diff(binary.indptr).astype(np.float64), n_products)
    blocks = [
        _similarity_block(by_product[start:stop] @ binary, start, inverse_norm, active, neighbours)
        for start, stop in _blocks(bound, SIMILARITY_BLOCK_ENTRIES, max_rows(n_products))
    ]
    similarity = (
        sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, n_products))
    )
    if self_similarity:
        similarity = similarity + sparse.diags(active.astype(np.float32), format="csr")
    return sparse.csr_matrix(similarity, dtype=np.float32)


def _similarity_block(
    block: sparse.csr_matrix,
    start: int,
    inverse_norm: np.ndarray,
    active: np.ndarray,
    neighbours: int,
) -> sparse.csr_matrix:
    """Co-purchase counts of products ``start``… → cosine, pruned, without self and inactive."""
    rows = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr))
    cols = block.indices
    values = block.data * inverse_norm[rows + start] * inverse_norm[cols]
    keep = active[cols] & (rows + start != cols)
    rows, cols, values = _prune(rows[keep], cols[keep], values[keep], neighbours, block.shape[1])
    return sparse.csr_matrix((values.astype(np.float32), (rows, cols)), shape=block.shape)


def _blocks(bound: np.ndarray, budget: int, most_rows: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed bound stays under the budget (at least one row)."""
    edges = [0]
    total = 0.0
    for i, value in enumerate(bound.tolist()):
        if (total + value > budget or i - edges[-1] >= most_rows) and i > edges[-1]:
            edges.append(i)
            total = 0.0
        total += float(value)
    edges.append(len(bound))
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _prune(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, keep: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``keep`` largest values of each row, sorted by row, value (desc), column.

    One ``np.sort`` of packed int64 keys — row, then the float32 score's bits inverted
    (non-negative floats order like their bit patterns), then the column — is several times
    faster than ``lexsort`` over the three arrays and breaks ties by the lower column, so a
    row's result never depends on which other rows share its chunk. Scores are rounded to
    float32. Rows must be fewer than ``max_rows(n_cols)``.
    """
    col_bits = max(int(n_cols - 1).bit_length(), 1)
    if rows.size and int(rows.max()) >= max_rows(n_cols):
        raise ValueError(f"a block holds more than {max_rows(n_cols)} rows")
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32)
    key = rows.astype(np.int64) << (32 + col_bits)
    key |= (np.uint32(0xFFFFFFFF) - bits).astype(np.int64) << col_bits
    key |= cols.astype(np.int64)
    key.sort()
    rows = key >> (32 + col_bits)
    cols = key & ((1 << col_bits) - 1)
    inverted = ((key >> col_bits) & 0xFFFFFFFF).astype(np.uint32)
    values = (np.uint32(0xFFFFFFFF) - inverted).view(np.float32)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if rows.size else rows
    rank = np.arange(rows.size) - np.repeat(starts, np.diff(np.r_[starts, rows.size]))
    chosen = rank < keep
    return rows[chosen], cols[chosen], values[chosen]


def max_rows(n_cols: int) -> int:
    """Rows one ``_prune`` call can take: 63 key bits = row + 32 score bits + column."""
    return 1 << (63 - 32 - max(int(n_cols - 1).bit_length(), 1))


def recommend_top_n(
    model: RecommenderModel,
    user_rows: np.ndarray,
    n: int = 10,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Recommendations:
    """Top-``n`` products for each customer index in ``user_rows``, scored ``chunk`` at a time."""
    user_rows = np.asarray(user_rows, dtype=np.int64)
    chunk = max(1, min(chunk, max_rows(model.history.shape[1])))
    if user_rows.size and (user_rows.min() < 0 or user_rows.max() >= model.history.shape[0]):
        raise IndexError(f"user_rows must lie in 0..{model.history.shape[0] - 1}")
    parts = [
        _recommend_chunk(model, user_rows[i : i + chunk], n)
        for i in range(0, user_rows.size, chunk)
    ]
    if not parts:
        empty = np.empty((0, n))
        return Recommendations(user_rows, empty.astype(np.int64), empty, empty.astype(np.int8))
    return Recommendations(
        customer_idx=user_rows,
        product_idx=np.vstack([p[0] for p in parts]),
        score=np.vstack([p[1] for p in parts]),
        source=np.vstack([p[2] for p in parts]),
    )


def _candidate_sources(
    model: RecommenderModel, history: sparse.csr_matrix
) -> list[tuple[int, sparse.csr_matrix]]:
    """The method's own sparse customers × products scores, in the order they fill slots."""
    bought = history @ sparse.diags(model.active.astype(np.float64))
    if model.method == "buy_again":
        return [(BUY_AGAIN, sparse.csr_matrix(bought))]
    if model.method not in ("item_cooccurrence", "buy_again_then_similar"):
        return []  # popular / trending: everyone gets the fallback list
    assert model.similarity is not None
    binary = history.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    together = sparse.csr_matrix(binary @ model.similarity)
    if model.exclude_bought or model.method == "buy_again_then_similar":
        together = sparse.csr_matrix(together - together.multiply(binary))
        together.eliminate_zeros()
    if model.method == "item_cooccurrence":
        return [(BOUGHT_TOGETHER, together)]
    return [(BUY_AGAIN, sparse.csr_matrix(bought)), (BOUGHT_TOGETHER, together)]


def _recommend_chunk(
    model: RecommenderModel, rows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    history = model.history[rows]
    products = np.full((rows.size, n), -1, dtype=np.int64)
    values = np.full((rows.size, n), np.nan)
    source = np.full((rows.size, n), -1, dtype=np.int8)
    enough = (np.diff(history.indptr) >= model.min_history).astype(np.float64)
    for code, scores in _candidate_sources(model, history):
        if not enough.all():  # little history: the popular list only
            scores = sparse.csr_matrix(sparse.diags(enough) @ scores)
            scores.eliminate_zeros()
        _place(scores, code, products, values, source)
    _fill_from_popular(model, history, products, values, source)
    return products, values, source


def _place(
    scores: sparse.csr_matrix,
    code: int,
    products: np.ndarray,
    values: np.ndarray,
    source: np.ndarray,
) -> None:
    """Put each row's best not-yet-listed candidates into its empty slots (from the left)."""
    n_rows, n = products.shape
    n_products = scores.shape[1]
    filled = (products >= 0).sum(axis=1)
    if (filled >= n).all():
        return
    coo = scores.tocoo()
    r, c, v = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    if filled.any():
        listed_rows, listed_slots = np.nonzero(products >= 0)
        listed = listed_rows * n_products + products[listed_rows, listed_slots]
        fresh = ~np.isin(r * n_products + c, listed)
        r, c, v = r[fresh], c[fresh], v[fresh]
    r, c, v = _prune(r, c, v, n, n_products)
    slot = filled[r] + np.arange(r.size) - np.searchsorted(r, np.arange(n_rows))[r]
    fits = slot < n
    products[r[fits], slot[fits]] = c[fits]
    values[r[fits], slot[fits]] = v[fits]
    source[r[fits], slot[fits]] = code


def _fill_from_popular(
    model: RecommenderModel,
    history: sparse.csr_matrix,
    products: np.ndarray,
    values: np.ndarray,
    source: np.ndarray,
) -> None:
    """Fill the -1 slots in place with the most popular products not already listed.

    Bought products are skipped when the model excludes them; the candidate list is long
    enough for the heaviest customer in the chunk to still find ``n`` products.
    """
    missing = products < 0
    if not missing.any():
        return
    n = products.shape[1]
    most_bought = int(np.diff(history.indptr).max()) if model.exclude_bought else 0
    ranked = model.popular_rank[: 2 * n + most_bought]
    position = np.full(model.popularity.size, -1, dtype=np.int64)
    position[ranked] = np.arange(ranked.size)
    taken = np.zeros((products.shape[0], ranked.size), dtype=bool)
    listed_rows, listed_slots = np.nonzero(~missing)
    listed_pos = position[products[listed_rows, listed_slots]]
    hit = listed_pos >= 0
    taken[listed_rows[hit], listed_pos[hit]] = True
    if model.exclude_bought:
        taken |= history[:, ranked].toarray() > 0
    need = missing.sum(axis=1)
    order = np.cumsum(~taken, axis=1)
    pick = ~taken & (order <= need[:, None])
    pick_rows, pick_pos = np.nonzero(pick)
    # The method's own picks fill each row from the left, so the missing slots are the last.
    target = n - need[pick_rows] + order[pick_rows, pick_pos] - 1
    products[pick_rows, target] = ranked[pick_pos]
    values[pick_rows, target] = model.popularity[ranked[pick_pos]]
    source[pick_rows, target] = POPULAR
