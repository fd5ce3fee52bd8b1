"""Cross-fitted ensembles: the validation winters rotate among the members.

With ``training.folds: K`` the training and validation winters form one pool,
split into K folds. Candidate *i* learns from every pool winter outside fold
``i mod K`` and early-stops (and is ranked) on that fold. Why: a fixed split
spends a third of the record's strong cascades on validation, so no member ever
learns from them; rotating the held-out fold lets the ensemble as a whole learn
from every cascade while each member still stops on winters it has not seen.
The test winters stay outside the pool.

Calibration is fitted on the out-of-fold forecast (:func:`out_of_fold`): each pool
day predicted by the members that did not learn from it — 28 winters instead of 4.

The folds are stratified by cascade strength (:func:`assign_folds`): with ~7
cascading winters in 28, a random split leaves folds without a cascade, and a
member stopping on quiet winters stops before it has learned any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["assign_folds", "cascade_strength", "fold_of", "out_of_fold", "select_per_fold"]


def fold_of(candidate: int, folds: int) -> int:
    """Fold on which candidate ``candidate`` validates (round robin)."""
    return candidate % folds


def cascade_strength(
    pool: Sequence[int], winters: npt.ArrayLike, targets: npt.ArrayLike
) -> dict[int, float]:
    """Each pool winter's coldest observed anomaly, per depth in units of that depth's
    standard deviation over the pool, averaged over depths: the more negative, the stronger
    its cascade (0 for a winter without data: quiet)."""
    labels = np.asarray(winters)
    y = np.asarray(targets, dtype=np.float64)
    in_pool = np.isin(labels, list(pool))
    scale = np.nanstd(np.where(in_pool[:, None], y, np.nan), axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    strength = {}
    for winter in pool:
        days = y[labels == winter] / scale
        minima = [np.nanmin(col) for col in days.T if np.isfinite(col).any()]
        strength[int(winter)] = float(np.mean(minima)) if minima else 0.0
    return strength


def assign_folds(
    pool: Sequence[int],
    winters: npt.ArrayLike,
    targets: npt.ArrayLike,
    folds: int,
) -> list[list[int]]:
    """Split the pool's winters into ``folds`` folds of similar cascade content.

    Winters are ranked by the strength of their coldest observed day (the lowest
    anomaly of each depth in units of that depth's standard deviation, averaged
    over depths; a winter without data counts as quiet) and dealt out like a snake
    draft: 0, 1, …, K−1, K−1, …, 0, 0, … so the strongest cascades land in
    different folds and the fold sizes differ by at most one.

    Parameters
    ----------
    pool : sequence of int
        Training and validation winters.
    winters : array-like
        ``(T,)`` winter year of each day.
    targets : array-like
        ``(T, D)`` observed anomalies (NaN where missing).
    folds : int
        Number of folds K (2 ≤ K ≤ len(pool)).
    """
    if not 2 <= folds <= len(pool):
        raise ValueError(f"folds ({folds}) must be between 2 and the pool's {len(pool)} winters")
    strength = cascade_strength(pool, winters, targets)
    ranked = sorted(pool, key=lambda w: (strength[w], w))
    assigned: list[list[int]] = [[] for _ in range(folds)]
    for rank, winter in enumerate(ranked):
        lap, position = divmod(rank, folds)
        assigned[position if lap % 2 == 0 else folds - 1 - position].append(int(winter))
    return [sorted(fold) for fold in assigned]


def select_per_fold(
    candidate_folds: Sequence[int], scores: Sequence[float], members: int
) -> list[int]:
    """Indices of the kept candidates: each fold's best in turn, then each fold's second…

    Every fold keeps the same number of members (± 1), so the ensemble's members
    together have learned from every pool winter. Scores compare candidates of the
    same fold only (different folds hold different winters). A non-finite score
    (diverged) ranks last.
    """
    by_fold: dict[int, list[int]] = {}
    for index, fold in enumerate(candidate_folds):
        by_fold.setdefault(fold, []).append(index)
    ranked = {
        fold: sorted(ids, key=lambda i: (scores[i] if math.isfinite(scores[i]) else math.inf, i))
        for fold, ids in by_fold.items()
    }
    kept: list[int] = []
    depth = 0
    while len(kept) < members and any(depth < len(ids) for ids in ranked.values()):
        for fold in sorted(ranked):
            if depth < len(ranked[fold]) and len(kept) < members:
                kept.append(ranked[fold][depth])
        depth += 1
    return sorted(kept)


def out_of_fold(
    member_mean: npt.ArrayLike,
    member_std: npt.ArrayLike,
    member_winters: Sequence[Sequence[int]],
    winters: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The ensemble's out-of-fold forecast of every pool day.

    Each day of a fold is forecast by the members that validated on that fold
    (never learned from it); every fold contributes its first ``n`` such members,
    ``n`` the smallest count over folds, so the result is a regular mixture.

    Parameters
    ----------
    member_mean, member_std : array-like
        ``(member, time, depth)`` member Gaussians.
    member_winters : sequence of sequences of int
        Each member's validation fold.
    winters : array-like
        ``(T,)`` winter year of each day.

    Returns
    -------
    tuple
        ``(n, T, D)`` means and standard deviations (NaN outside the folds) and the
        ``(T,)`` mask of the days they cover.
    """
    mu = np.asarray(member_mean, dtype=np.float64)
    sigma = np.asarray(member_std, dtype=np.float64)
    labels = np.asarray(winters)
    groups: dict[tuple[int, ...], list[int]] = {}
    for m, fold in enumerate(member_winters):
        groups.setdefault(tuple(sorted(int(w) for w in fold)), []).append(m)
    n = min(len(ids) for ids in groups.values())
    out_mu = np.full((n, *mu.shape[1:]), np.nan)
    out_sigma = np.full_like(out_mu, np.nan)
    covered = np.zeros(labels.shape, dtype=bool)
    for fold, ids in groups.items():
        days = np.isin(labels, fold)
        out_mu[:, days] = mu[ids[:n]][:, days]
        out_sigma[:, days] = sigma[ids[:n]][:, days]
        covered |= days
    return out_mu, out_sigma, covered
