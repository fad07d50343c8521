"""Evidence that accumulates: a change-point test on the share one series takes of a pool.

A tracking failure changes how one channel relates to another (server vs browser for the same event,
one event vs the rest of the pixel's traffic); a change in demand (a storm, a sale, a holiday, a site
outage) moves them together. So the question is never "is this count low?" but "is this series' share
of what its witnesses saw lower than it used to be?". Conditional on the pool total ``n`` of an hour
range, the target's count is Binomial(n, p), which holds whatever demand did.

The test is a generalised likelihood ratio (GLR) over change points: for every candidate onset ``tau``
in the look-back, the reference share comes from the hours *before* ``tau`` (incident hours kept out),
and the evidence is the binomial log-likelihood ratio of the hours from ``tau`` on, between the
observed share and the reference share scaled by ``margin`` (a non-inferiority test: it fires only when
the data say the share is below ``margin`` times its usual level, so a slow drift of a few percent on a
huge series never fires). The onset that maximises it is the estimated start of the failure; because
the reference stops at the onset, a failure that began days ago is judged against the level before it,
not against a baseline that has absorbed it.

Recovery is tested the same way in reverse: the most recent hours against the failed level versus the
reference level. A failure is reported only while it is not shown to be over.

Thresholds are log-likelihood ratios (natural log): ``ALARM_LLR`` = 7 is odds of about 1100:1 for "the
share is below margin x usual" against "it is at the margin"; under the null the true share sits at or
above the usual level, further from the alternative than the margin, so a false alarm needs much more
luck than the odds say. ``RECOVERY_LLR`` = 4.6 is 100:1 for "back at the usual level".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

ALARM_LLR = 7.0
RECOVERY_LLR = 4.6
# The reference needs this many pool events (target + partner) before its share is trusted.
MIN_REFERENCE_POOL = 30.0
MIN_REFERENCE_TARGET = 3.0
# One-sided 97.5 % bound of the reference share (see ``wilson_lower``).
REFERENCE_Z = 1.96
# Reference hours before a candidate onset (4 weeks).
REFERENCE_HOURS = 28 * 24


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else x * math.log(y)


def binomial_loglik(k: float, n: float, p: float) -> float:
    """log P(k of n | p) without the binomial coefficient (it cancels in every ratio used here)."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    return _xlogy(k, p) + _xlogy(n - k, 1 - p)


def share_drop_llr(k: float, n: float, p_null: float) -> float:
    """GLR of "share below p_null" for k of n: 0 when the observed share is not below it."""
    if n <= 0 or k / n >= p_null:
        return 0.0
    return binomial_loglik(k, n, k / n) - binomial_loglik(k, n, p_null)


def wilson_lower(k: float, n: float, z: float = REFERENCE_Z) -> float:
    """Lower end of the Wilson score interval of a binomial share (k of n)."""
    if n <= 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def _prefix(values: Sequence[float]) -> list[float]:
    return [0.0, *accumulate(values)]


@dataclass(frozen=True)
class ShareShift:
    """The strongest drop of a target's share found in the look-back."""

    llr: float  # evidence for the drop (see module docstring)
    onset: int  # index of the first hour of the dropped segment
    reference_ratio: float  # target per partner event before the onset
    target_after: float
    partner_after: float
    # Index of the first hour of a recovered tail (None: not recovered).
    recovered_from: int | None
    # Evidence a total loss over the whole look-back would give: below ALARM_LLR the series is too
    # thin to be judged at all.
    power: float

    @property
    def expected_after(self) -> float:
        return self.reference_ratio * self.partner_after

    @property
    def ratio_of_reference(self) -> float:
        expected = self.expected_after
        return self.target_after / expected if expected > 0 else 1.0

    @property
    def alarm(self) -> bool:
        return self.llr >= ALARM_LLR and self.recovered_from is None


def share_shift(target: Sequence[float], partner: Sequence[float], usable: Sequence[bool], *,
                lookback: int, margin: float, known_from: int = 0) -> ShareShift | None:
    """The drop of ``target``'s share of ``target + partner`` with the most evidence.

    Arrays are hourly, oldest first; the last element is the newest settled hour. ``usable[i]`` says
    whether hour i may serve as reference (hours of open incidents may not). Hours before
    ``known_from`` are unknown (before the data started). None when no onset in the look-back has a
    trustworthy reference.
    """
    n_hours = len(target)
    t_all, p_all = _prefix(target), _prefix(partner)
    if len(usable) != n_hours or len(partner) != n_hours:
        raise ValueError("target, partner and usable must cover the same hours")
    if all(usable):  # no incident hour to keep out: the reference sums are the plain ones
        t_ref, p_ref = t_all, p_all
    else:
        t_ref = _prefix([t if ok else 0.0 for t, ok in zip(target, usable, strict=True)])
        p_ref = _prefix([p if ok else 0.0 for p, ok in zip(partner, usable, strict=True)])
    best: tuple[float, int, float] | None = None  # (llr, onset, reference ratio)
    power = 0.0
    first_onset = max(known_from + 1, n_hours - lookback)
    # This loop runs for every series, witness and match key of every audit (a few hundred onsets
    # each): ``wilson_lower`` and ``share_drop_llr`` are inlined with the same operations in the same
    # order, so the figures are the very same floats, without a Python call per onset.
    sqrt, log, log1p = math.sqrt, math.log, math.log1p
    z = REFERENCE_Z
    t_end, p_end = t_all[n_hours], p_all[n_hours]
    for onset in range(n_hours - 1, first_onset - 1, -1):
        start = max(known_from, onset - REFERENCE_HOURS)
        ref_t = t_ref[onset] - t_ref[start]
        ref_p = p_ref[onset] - p_ref[start]
        if ref_t < MIN_REFERENCE_TARGET or ref_p <= 0 or ref_t + ref_p < MIN_REFERENCE_POOL:
            continue
        ratio = ref_t / ref_p
        # The reference is itself an estimate: a few hours of it (a short history, an onset near its
        # start) can be high by chance. Its lower 95 % bound is what a drop must fall below.
        n = ref_t + ref_p  # wilson_lower(ref_t, n), n > 0 here
        share = ref_t / n
        centre = share + z * z / (2 * n)
        spread = z * sqrt(share * (1 - share) / n + z * z / (4 * n * n))
        low = max(0.0, (centre - spread) / (1 + z * z / n))
        low_ratio = low / (1 - low) if low < 1 else ratio
        p_null = margin * low_ratio / (1 + margin * low_ratio)
        after_t = t_end - t_all[onset]
        after_p = p_end - p_all[onset]
        power = max(power, -after_p * log1p(-p_null))
        k, n = after_t, after_t + after_p  # share_drop_llr(k, n, p_null)
        if n <= 0 or k / n >= p_null:
            llr = 0.0
        else:
            observed = min(max(k / n, 1e-12), 1 - 1e-12)
            null = min(max(p_null, 1e-12), 1 - 1e-12)
            llr = ((0.0 if k == 0 else k * log(observed)) + (0.0 if n - k == 0 else (n - k) * log(1 - observed))) \
                - ((0.0 if k == 0 else k * log(null)) + (0.0 if n - k == 0 else (n - k) * log(1 - null)))
        if best is None or llr > best[0]:
            best = (llr, onset, ratio)
    if best is None:
        return None
    llr, onset, ratio = best
    after_t = t_all[n_hours] - t_all[onset]
    after_p = p_all[n_hours] - p_all[onset]
    recovered = (_recovered_from(t_all, p_all, onset, n_hours, ratio, margin)
                 if llr >= ALARM_LLR else None)
    return ShareShift(llr=llr, onset=onset, reference_ratio=ratio, target_after=after_t,
                      partner_after=after_p, recovered_from=recovered, power=power)


def _recovered_from(t_all: list[float], p_all: list[float], onset: int, end: int,
                    ratio: float, margin: float) -> int | None:
    """Start of the most recent hours that are shown to be back at the reference share, if any.

    Back means: the recent hours are far likelier at the reference share than at the failed share,
    and likelier at the reference than at the margin (a partial recovery to half the usual level is
    not a recovery)."""
    p_ref = ratio / (1 + ratio)
    p_null = margin * ratio / (1 + margin * ratio)
    for split in range(end - 1, onset, -1):
        recent_t, recent_p = t_all[end] - t_all[split], p_all[end] - p_all[split]
        bad_t, bad_p = t_all[split] - t_all[onset], p_all[split] - p_all[onset]
        if bad_t + bad_p <= 0:
            continue
        # Half an event keeps a total loss from making any recent event infinitely convincing.
        p_bad = max(bad_t, 0.5) / (bad_t + bad_p)
        if p_bad >= p_ref:
            continue  # too short a failed stretch to tell anything from
        n = recent_t + recent_p
        at_ref = binomial_loglik(recent_t, n, p_ref)
        gain = at_ref - binomial_loglik(recent_t, n, p_bad)
        if gain >= RECOVERY_LLR and at_ref >= binomial_loglik(recent_t, n, p_null):
            return split
    return None
