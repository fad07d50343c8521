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
from typing import Any

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
    def alarm(self) -> bool:
        return self.llr >= ALARM_LLR and self.recovered_from is None


def share_shift(target: Sequence[float], partner: Sequence[float], usable: Sequence[bool], *,
                lookback: int, margin: float, known_from: int = 0, on_share: bool = False) -> ShareShift | None:
    """The drop of ``target``'s share of ``target + partner`` with the most evidence.

    Arrays are hourly, oldest first; the last element is the newest settled hour. ``usable[i]`` says
    whether hour i may serve as reference (hours of open incidents may not). Hours before
    ``known_from`` are unknown (before the data started). None when no onset in the look-back has a
    trustworthy reference. ``margin`` scales the target's odds against its partner (channels, pools),
    or with ``on_share`` the share itself (a key's coverage: on 90 % of events, a margin of 0.75 on the
    odds leaves the null at 87 %, where four events without the key are already 8 nats; on the share
    the null is 67 %, and it takes seven).
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
    first_onset = max(known_from + 1, n_hours - lookback)
    candidates = range(n_hours - 1, first_onset - 1, -1)  # newest first: on a tie the latest onset wins
    onsets: Sequence[int] = candidates
    if len(candidates) >= _SCREEN_FROM:
        onsets = _screened_onsets(t_all, p_all, t_ref, p_ref, candidates, margin=margin, known_from=known_from,
                                  on_share=on_share)
    best: tuple[float, int, float] | None = None  # (llr, onset, reference ratio)
    power = 0.0
    for onset in onsets:
        figures = _onset_figures(t_all, p_all, t_ref, p_ref, onset, margin=margin, known_from=known_from,
                                 on_share=on_share)
        if figures is None:
            continue
        llr, ratio, onset_power = figures
        power = max(power, onset_power)
        if best is None or llr > best[0]:
            best = (llr, onset, ratio)
    if best is None:
        return None
    llr, onset, ratio = best
    after_t = t_all[n_hours] - t_all[onset]
    after_p = p_all[n_hours] - p_all[onset]
    recovered = (_recovered_from(t_all, p_all, onset, n_hours, ratio, margin, on_share=on_share)
                 if llr >= ALARM_LLR else None)
    return ShareShift(llr=llr, onset=onset, reference_ratio=ratio, target_after=after_t,
                      partner_after=after_p, recovered_from=recovered, power=power)


def _onset_figures(t_all: list[float], p_all: list[float], t_ref: list[float], p_ref: list[float], onset: int,
                   *, margin: float, known_from: int, on_share: bool = False) -> tuple[float, float, float] | None:
    """(llr, reference ratio, power) of a drop starting at ``onset``; None without a trustworthy reference."""
    n_hours = len(t_all) - 1
    start = max(known_from, onset - REFERENCE_HOURS)
    ref_t = t_ref[onset] - t_ref[start]
    ref_p = p_ref[onset] - p_ref[start]
    if ref_t < MIN_REFERENCE_TARGET or ref_p <= 0 or ref_t + ref_p < MIN_REFERENCE_POOL:
        return None
    ratio = ref_t / ref_p
    # The reference is itself an estimate: a few hours of it (a short history, an onset near its
    # start) can be high by chance. Its lower 95 % bound is what a drop must fall below.
    low = wilson_lower(ref_t, ref_t + ref_p)
    low_ratio = low / (1 - low) if low < 1 else ratio
    p_null = margin * low if on_share else margin * low_ratio / (1 + margin * low_ratio)
    after_t = t_all[n_hours] - t_all[onset]
    after_p = p_all[n_hours] - p_all[onset]
    power = -after_p * math.log1p(-p_null)
    return share_drop_llr(after_t, after_t + after_p, p_null), ratio, power


# From this many candidate onsets on, numpy screens them first (see ``_screened_onsets``).
_SCREEN_FROM = 24
# Screening keeps every onset whose approximate figure is within this relative distance of the best
# one. numpy's vectorised logarithms may differ from ``math``'s in the last bits (1e-15 relative):
# this margin is a hundred thousand times that, so the onset with the best exact figure is never lost.
_SCREEN_TOLERANCE = 1e-10


def drop_profile(target: Sequence[float], partner: Sequence[float], *, lookback: int, margin: float,
                 known_from: int = 0, on_share: bool = False) -> dict[int, float]:
    """Onset index -> evidence (llr, nats) of a drop of ``target``'s share starting there, for every
    onset of the look-back with a trustworthy reference (no hours kept out: for shares that incidents
    do not move). Evidence of independent series at the same onset adds up: the sum over events is the
    test of one change hitting several of them (``tools.checks.emq``)."""
    t_all, p_all = _prefix(target), _prefix(partner)
    n_hours = len(target)
    first_onset = max(known_from + 1, n_hours - lookback)
    if first_onset > n_hours - 1:
        return {}
    at, llr, *_ = _onset_arrays(t_all, p_all, t_all, p_all, range(n_hours - 1, first_onset - 1, -1),
                                margin=margin, known_from=known_from, on_share=on_share)
    return {int(onset): float(value) for onset, value in zip(at, llr, strict=True)}


def shift_at(target: Sequence[float], partner: Sequence[float], onset: int, *, margin: float,
             known_from: int = 0, on_share: bool = False) -> ShareShift | None:
    """The drop of ``target``'s share from a given onset (None without a trustworthy reference)."""
    t_all, p_all = _prefix(target), _prefix(partner)
    figures = _onset_figures(t_all, p_all, t_all, p_all, onset, margin=margin, known_from=known_from,
                             on_share=on_share)
    if figures is None:
        return None
    llr, ratio, power = figures
    n_hours = len(target)
    recovered = _recovered_from(t_all, p_all, onset, n_hours, ratio, margin, on_share=on_share) if llr > 0 else None
    return ShareShift(llr=llr, onset=onset, reference_ratio=ratio, target_after=t_all[n_hours] - t_all[onset],
                      partner_after=p_all[n_hours] - p_all[onset], recovered_from=recovered, power=power)


def _onset_arrays(t_all: list[float], p_all: list[float], t_ref: list[float], p_ref: list[float],
                  onsets: range, *, margin: float, known_from: int,
                  on_share: bool = False) -> tuple[Any, Any, Any, Any, Any]:
    """(onsets, llr, power, dropped, total) as numpy arrays over the onsets with a trustworthy
    reference: the figures of ``_onset_figures``, up to the last bits of the logarithms."""
    import numpy as np

    n_hours = len(t_all) - 1
    at = np.arange(onsets.start, onsets.stop, onsets.step)
    starts = np.maximum(known_from, at - REFERENCE_HOURS)
    t_ref_a, p_ref_a = np.asarray(t_ref, dtype=float), np.asarray(p_ref, dtype=float)
    ref_t = t_ref_a[at] - t_ref_a[starts]
    ref_p = p_ref_a[at] - p_ref_a[starts]
    valid = (ref_t >= MIN_REFERENCE_TARGET) & (ref_p > 0) & (ref_t + ref_p >= MIN_REFERENCE_POOL)
    at, ref_t, ref_p = at[valid], ref_t[valid], ref_p[valid]
    t_all_a, p_all_a = np.asarray(t_all, dtype=float), np.asarray(p_all, dtype=float)
    after_t = t_all_a[n_hours] - t_all_a[at]
    after_p = p_all_a[n_hours] - p_all_a[at]
    with np.errstate(divide="ignore", invalid="ignore"):
        n = ref_t + ref_p
        share = ref_t / n
        z = REFERENCE_Z
        centre = share + z * z / (2 * n)
        spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
        low = np.maximum(0.0, (centre - spread) / (1 + z * z / n))
        low_ratio = np.where(low < 1, low / (1 - low), ref_t / ref_p)
        p_null = margin * low if on_share else margin * low_ratio / (1 + margin * low_ratio)
        power = -after_p * np.log1p(-p_null)
        total = after_t + after_p
        dropped = (total > 0) & (after_t / total < p_null)
        observed = np.clip(after_t / total, 1e-12, 1 - 1e-12)
        null = np.clip(p_null, 1e-12, 1 - 1e-12)
        rest = total - after_t
        # The same operations as ``share_drop_llr`` (the arguments of each log are the same floats).
        at_observed = (np.where(after_t == 0, 0.0, after_t * np.log(observed))
                       + np.where(rest == 0, 0.0, rest * np.log(1 - observed)))
        at_null = (np.where(after_t == 0, 0.0, after_t * np.log(null))
                   + np.where(rest == 0, 0.0, rest * np.log(1 - null)))
        llr = np.where(dropped, at_observed - at_null, 0.0)
    return at, llr, power, dropped, total


def _screened_onsets(t_all: list[float], p_all: list[float], t_ref: list[float], p_ref: list[float],
                     onsets: range, *, margin: float, known_from: int, on_share: bool = False) -> list[int]:
    """The few onsets (newest first) that can hold the best evidence or the highest power.

    ``share_shift`` looks at every onset of the look-back for every series, witness and match key of
    every audit: the figures of all onsets are computed at once with numpy, and only the onsets that
    come within ``_SCREEN_TOLERANCE`` of the best llr or of the highest power are computed again
    exactly (``_onset_figures``). An onset whose llr is 0 (share not below the null) needs no
    logarithm and is exact already; of those only the newest can win a tie, so only it is kept."""
    import numpy as np

    at, llr, power, dropped, total = _onset_arrays(t_all, p_all, t_ref, p_ref, onsets, margin=margin,
                                                   known_from=known_from, on_share=on_share)
    if not len(at):
        return []
    keep = np.zeros(len(at), dtype=bool)
    if dropped.any():
        # The terms of an llr are up to ~28 nats per event (shares clipped at 1e-12): the error of the
        # approximation scales with them, not with the llr (a difference of two such sums).
        scale = 30.0 * float(total[dropped].max()) + 1.0
        keep |= dropped & (llr >= float(llr.max()) - _SCREEN_TOLERANCE * scale)
    if not dropped.all() and (not dropped.any() or float(llr.max()) <= _SCREEN_TOLERANCE * 30.0 * float(total.max())):
        keep[int(np.argmin(dropped))] = True  # the newest onset with llr 0
    top = float(power.max())
    keep |= power >= top - _SCREEN_TOLERANCE * (abs(top) + 1.0)
    return [int(onset) for onset in at[keep]]


def _recovered_from(t_all: list[float], p_all: list[float], onset: int, end: int,
                    ratio: float, margin: float, *, on_share: bool = False) -> int | None:
    """Start of the most recent hours that are shown to be back at the reference share, if any.

    Back means: the recent hours are far likelier at the reference share than at the failed share,
    and likelier at the reference than at the margin (a partial recovery to half the usual level is
    not a recovery)."""
    p_ref = ratio / (1 + ratio)
    p_null = margin * p_ref if on_share else margin * ratio / (1 + margin * ratio)
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
