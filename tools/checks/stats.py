"""Is a share in the audited hours news, or the pixel's usual level? One test shared by the checks
that judge a share of bad events (hashing, repeated event ids, double-counted purchases).

The window has ``k`` bad events out of ``n``; the history (the days before the window) had ``K`` out
of ``N``. The usual share is not known exactly, so it is given a Beta(K + 1/2, N - K + 1/2)
distribution (Jeffreys' prior updated with the history) and the window's count is judged against
the beta-binomial distribution that follows: the one-sided tail ``P(X >= k)`` is the chance of
seeing at least this many bad events if nothing changed. A short history widens the distribution by
itself, so a new or small pixel needs more evidence than one with weeks of data, and one stray bad
value in a small window is never news.

Significance alone is not enough on large volumes (a move from 2.0 % to 2.3 % is "significant" on
50 000 events and of no interest), so a share must also rise by a minimum amount (``min_excess``)
before it is reported as news; see ``judge_share``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from tools.checks.types import AuditInputs

# One-sided level of the beta-binomial test. A pixel runs 168 audits a week and a check judges a
# handful of shares in each (a few events x a few fields with a standing bad share); at 1e-4 that is
# under one chance in ten per pixel-week of calling a steady condition new, before the minimum
# rise below removes most of what is left.
ALPHA = 1e-4
# Below this many events of history the usual share is unknown (see judge_share).
MIN_HISTORY = 20


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p); 1.0 when k <= 0."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_pmf = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
               + k * math.log(p) + (n - k) * math.log1p(-p))
    term = total = math.exp(log_pmf)
    ratio_p = p / (1 - p)
    x = k
    while x < n:
        term *= (n - x) / (x + 1) * ratio_p
        x += 1
        total += term
        if x > n * p and term < total * 1e-12:
            break
    return min(1.0, total)


def beta_binomial_tail(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b); 1.0 when k <= 0."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    # log pmf(k) = log C(n, k) + log B(k + a, n - k + b) - log B(a, b)
    log_pmf = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
               + math.lgamma(k + a) + math.lgamma(n - k + b) - math.lgamma(n + a + b)
               - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    term = math.exp(log_pmf)
    total = term
    mean = n * a / (a + b)
    x = k
    while x < n:
        # pmf(x + 1) / pmf(x) = (n - x) / (x + 1) * (x + a) / (n - x - 1 + b)
        term *= (n - x) / (x + 1) * (x + a) / (n - x - 1 + b)
        x += 1
        total += term
        if x > mean and term < total * 1e-12:
            break
    return min(1.0, total)


@dataclass(frozen=True)
class ShareVerdict:
    """How the window's share compares with the usual one."""

    share: float  # k / n in the window
    usual: float | None  # the history's share (None: no history to compare with)
    p_value: float  # P(at least k of n | the usual share, with its uncertainty)
    news: bool  # clearly above the usual share: report it (warning / critical)
    above_floor: bool  # above the absolute floor at all (news or standing)

    @property
    def standing(self) -> bool:
        """Above the floor, but at the pixel's usual level: tracked (info), not news."""
        return self.above_floor and not self.news


def judge_share(k: int, n: int, k_hist: int, n_hist: int, *, floor: float, relative: float = 0.25,
                alpha: float = ALPHA) -> ShareVerdict:
    """Judge ``k`` bad of ``n`` against ``k_hist`` of ``n_hist`` in the history.

    - ``above_floor``: the window's share is above ``floor`` (the share of bad values a pixel may
      have without anyone caring).
    - ``news``: above the floor, and (1) at least ``max(floor, relative * usual)`` above the usual
      share: a rise a person would call "worse" (a share twice the floor when the history is clean,
      a quarter more than a large standing share), and (2) that rise is not chance:
      ``beta_binomial_tail < alpha``.
    - With less than ``MIN_HISTORY`` events of history there is no usual share to speak of: the
      window is judged against the floor itself, ``P(X >= k | Binomial(n, floor)) < alpha`` (a new
      pixel, or a field it never sent before, is news as soon as the count clearly exceeds what the
      floor allows).
    """
    share = k / n if n else 0.0
    usual = k_hist / n_hist if n_hist else None
    above = n > 0 and share > floor
    if not above:
        return ShareVerdict(share, usual, 1.0, False, False)
    if n_hist < MIN_HISTORY:
        p_value = binomial_tail(k, n, floor)
        return ShareVerdict(share, usual, p_value, p_value < alpha, True)
    base = k_hist / n_hist
    p_value = beta_binomial_tail(k, n, k_hist + 0.5, n_hist - k_hist + 0.5)
    news = share - base >= max(floor, relative * base) and p_value < alpha
    return ShareVerdict(share, usual, p_value, news, True)


def usual_counts(days: list[tuple[int, int]]) -> tuple[int, int]:
    """The history's (bad, total) to judge a window against, from per-day (bad, total) counts.

    The pooled share of the days, unless the median day was cleaner: then the median day's share
    (scaled to the pooled total). A problem that began three days ago is then still news (most
    days of the week did not have it), and it becomes the standing level only once it has held on
    most days of the week, never because it dragged the pooled average up.
    """
    bad, total = sum(k for k, _ in days), sum(n for _, n in days)
    shares = sorted(k / n for k, n in days if n)
    if not shares or not total:
        return bad, total
    middle = len(shares) // 2
    median = shares[middle] if len(shares) % 2 else (shares[middle - 1] + shares[middle]) / 2
    if median < bad / total:
        bad = round(median * total)
    return bad, total


def open_since(inputs: AuditInputs, causes: Collection[str], event_name: str) -> datetime | None:
    """Start of the earliest open incident of one of ``causes`` touching ``event_name`` (a span with
    no event names touches every event), or None. Its hours are no reference: a problem that is
    still an open incident never becomes the pixel's "usual" level, however long it lasts."""
    starts = [span.since for span in inputs.incident_spans
              if span.root_cause in causes and (not span.event_names or event_name in span.event_names)]
    return min(starts) if starts else None
