"""The ETA as a range: the 10th to the 90th percentile of the time the items left will take. Pure.

The point ETA (progress.py) is `left` times the mean of the batch's recent completion intervals (the gaps
between its last k <= 10 completions on the active clock, which stops while the batch is paused). The range
treats the `left` intervals still to come as independent draws like the recent ones:

    mean gap   g  = (ck - c0) / k                                 the point ETA's own rate
    variance   v  = (sum of (gap - g)^2 + 2 g^2) / (k - 1 + 2)    the recent gaps' spread, steadied by two
                                                                  pseudo-gaps as spread as a Poisson process's
                                                                  (standard deviation = mean), so that one or
                                                                  two completions do not give a narrow range
    total      M  = left * g                                      = the point ETA
    its spread V  = left * v * (1 + left / k)                     the gaps' own spread, plus that of g itself,
                                                                  measured on only k gaps
    range         = the 10th and 90th percentiles of the lognormal with mean M and variance V
                    (sigma^2 = ln(1 + V / M^2), mu = ln M - sigma^2 / 2; percentiles exp(mu -/+ 1.2816 sigma)),
                    widened to hold the point ETA should it fall outside (only for an extremely spread window)

A lognormal because remaining time is positive and skewed to the long side; it brackets the point ETA. The
range is None before the first completion (there is no interval to measure: the page shows "estimating…"),
and [0, 0] when nothing is left. Like the point ETA it reads only the stored window, never a clock, so it is
the same on every stream and after a reload.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

Z90 = 1.2815515655446004  # the standard normal's 90th percentile
PRIOR_CV = 1.0  # spread of the pseudo-gaps, as a share of the mean gap
PRIOR_WEIGHT = 2  # how many pseudo-gaps


def eta_range_ms(remaining: int, window: Sequence[int], *, point_ms: int) -> tuple[int, int] | None:
    """[low, high] in ms for `remaining` items from the completion `window` (as progress.py keeps it: c0..ck),
    holding `point_ms`, the point ETA of the same figures."""
    if remaining <= 0:
        return (0, 0)
    k = len(window) - 1
    if k < 1:
        return None
    mean = max(window[-1] - window[0], 1) / k  # as throughput_per_minute: a span of 0 counts as 1 ms
    squares = sum((b - a - mean) ** 2 for a, b in pairwise(window))
    variance = (squares + PRIOR_WEIGHT * (PRIOR_CV * mean) ** 2) / (k - 1 + PRIOR_WEIGHT)
    total = remaining * mean
    spread = remaining * variance * (1 + remaining / k)
    sigma2 = math.log1p(spread / total**2)
    sigma = math.sqrt(sigma2)
    mu = math.log(total) - sigma2 / 2
    low, high = math.exp(mu - Z90 * sigma), math.exp(mu + Z90 * sigma)
    return (max(1, min(math.floor(low), point_ms)), max(math.ceil(high), point_ms))
