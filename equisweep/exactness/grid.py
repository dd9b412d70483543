"""The sampling-grid rule: which window and slice layouts are symmetric about the centre of a map.

One axis of n pixels: a window op with kernel k, stride s and padding p places its windows at i·s - p,
i = 0..m-1; the set of windows is mirror-symmetric about the centre iff the last window ends exactly on the padded
border, ``(n + 2p - k) % s == 0``. A slice ``start:stop:step`` keeps the pixels ``range(start, stop, step)``,
symmetric iff the first and the last kept pixel lie equally far from the two borders.
"""

from __future__ import annotations


def symmetric_grid(n: int, k: int, s: int, p: int = 0, p_after: int | None = None, ceil_mode: bool = False,
                   kind: str = "conv", count_include_pad: bool = True) -> bool:
    """True iff a k/s/p window op over n pixels samples windows symmetric about the centre.

    For a conv with symmetric padding this is ``(n + 2p - k) % s == 0``: n=33, k=3, s=2, p=1 -> 32 % 2 == 0,
    True; n=32 -> False. The general form compares the list of windows with its mirror image and handles
    asymmetric padding (``p_after``) and pools in ``ceil_mode`` (windows clipped to the padded border, the last
    one starting inside the input or the left padding, as PyTorch does). A conv weighs each window position
    differently, so its windows must mirror including the padding; a pool only sees which real pixels a window
    holds (``max_pool``: padding is -inf) and, for ``avg_pool`` counting the padding, how many cells it divides
    by. ``k`` is the effective extent, dilation·(k-1) + 1.
    """
    p_after = p if p_after is None else p_after
    span = n + p + p_after - k
    if span < 0:
        return False  # no window fits: the layer would get an empty map
    if ceil_mode:
        m = -(-span // s) + 1
        if (m - 1) * s >= n + p:
            m -= 1
    else:
        m = span // s + 1

    def window(i: int) -> tuple:
        start = i * s - p
        end = min(start + k - 1, n - 1 + p_after)
        if kind == "conv":
            return start, end
        divisor = end - start + 1 if kind == "avg_pool" and count_include_pad else 0
        return max(start, 0), min(end, n - 1), divisor  # the real pixels it holds, and what it divides by

    def mirrored(i: int) -> tuple:
        a, b, *divisor = window(m - 1 - i)
        return (n - 1 - b, n - 1 - a, *divisor)

    # Only the windows within a kernel and the padding of either border are clipped; all the others are the same
    # window shifted, so one of them stands for the rest and the check costs O(k / s), not O(n) (any input size).
    edge = (k + p + p_after) // s + 2
    checked = {*range(min(edge + 1, m)), *range(max(m - edge, 0), m)}
    return all(window(i) == mirrored(i) for i in checked)


def symmetric_slice(n: int, index: slice) -> bool:
    """True iff ``index`` keeps pixels of an n-pixel axis symmetric about its centre: ``[1:-1]`` and ``[::2]`` at
    odd n do, ``[::2]`` at even n and ``[1:]`` do not. A reversing step mirrors the axis: no sampling grid, False."""
    start, stop, step = index.indices(n)
    kept = range(start, stop, step)
    return step > 0 and len(kept) > 0 and kept[0] + kept[-1] == n - 1
