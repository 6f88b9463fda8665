"""HyperLogLog in Numba: tiny distinct-count sketches that merge by register max.

Registers are uint8 arrays of 2**bits entries. The register index is the top
``bits`` bits of a well-mixed 64-bit hash; the value is the position of the first
set bit in the rest. The estimate uses the classic bias constant with
linear counting for small cardinalities (Flajolet et al. 2007), which is the
regime of one account-minute.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

from pipeline.kernels.bits import clz64

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def mix64(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser: spreads structured keys (IPv4 integers) over all 64 bits."""
    z = uint64(x) + _GOLDEN
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(cache=True, nogil=True)
def hll_add(registers: np.ndarray, h: np.uint64, bits: int) -> None:
    """Add a hashed item to the sketch (registers has 2**bits entries)."""
    h = uint64(h)
    idx = h >> uint64(64 - bits)
    rest = h << uint64(bits)
    rank = clz64(rest) + 1
    cap = 64 - bits + 1
    if rank > cap:
        rank = cap
    if registers[idx] < rank:
        registers[idx] = rank


def _linear_counting_table(max_m: int) -> np.ndarray:
    """m * log(m / zeros) for every m, zeros <= max_m, by Python's math.log (what the reference computes)."""
    table = np.zeros((max_m + 1, max_m + 1), np.float64)
    for m in range(1, max_m + 1):
        for zeros in range(1, m + 1):
            table[m, zeros] = m * math.log(m / zeros)
    return table


# The kernels' sketches have at most 64 registers; a log per sketch per closed frame is
# a measurable share of closing, a table lookup is not.
_LINEAR = _linear_counting_table(64)


@njit(cache=True, nogil=True)
def _scale_bits(m: int) -> int:
    """k = 52 - ceil(log2 m): m registers of 2**(k - v) sum below 2**53."""
    k = 52
    while (1 << (52 - k)) < m:
        k -= 1
    return k


@njit(cache=True, nogil=True)
def _finish(m: int, zeros: int, total: float) -> int:
    """The estimate from sum(2**-v) over the m registers, of which ``zeros`` are zero."""
    alpha = _alpha(m)
    estimate = alpha * m * m / total
    if estimate <= 2.5 * m and zeros > 0:
        estimate = _LINEAR[m, zeros] if m < _LINEAR.shape[0] else m * math.log(m / zeros)
    return int(estimate + 0.5)


# Both estimators sum 2**-v in register order. When every v <= k (``_scale_bits``),
# each partial sum is a multiple of 2**-k below 2**53 * 2**-k, so float addition is
# exact and the integer sum of 2**(k - v), scaled by 2**-k, is the same double without
# a division per register. A larger register (vanishingly rare) takes the plain sum.


@njit(cache=True, nogil=True)
def hll_estimate(registers: np.ndarray) -> int:
    """Estimated number of distinct items, rounded to an integer."""
    m = registers.shape[0]
    # One loop for both entry points: a (1, 1, m) view of the registers (outside the kernels' hot path).
    return hll_estimate_at(np.ascontiguousarray(registers).reshape((1, 1, m)), 0, 0, 0, m)


@njit(cache=True, nogil=True)
def hll_estimate_at(sketches: np.ndarray, s: int, r: int, off: int, m: int) -> int:
    """``hll_estimate(sketches[s, r, off:off + m])`` without building the view (no refcounting)."""
    k = _scale_bits(m)
    zeros = 0
    vmax = 0
    scaled = 0
    for j in range(m):
        v = np.int64(sketches[s, r, off + j])
        zeros += v == 0
        vmax = max(vmax, v)
        scaled += np.int64(1) << ((k - v) & 63)
    if zeros == m:
        return 0
    if vmax <= k:
        return _finish(m, zeros, float(scaled) * _inv_pow2(k))
    total = 0.0
    for j in range(m):
        total += 1.0 / float(np.uint64(1) << np.uint64(sketches[s, r, off + j]))
    return _finish(m, zeros, total)


@njit(cache=True, nogil=True)
def _inv_pow2(k: int) -> float:
    """2.0 ** -k exactly (0 <= k <= 62)."""
    return 1.0 / float(np.uint64(1) << np.uint64(k))


@njit(cache=True, nogil=True)
def _alpha(m: int) -> float:
    if m == 16:
        return 0.673
    if m == 32:
        return 0.697
    if m == 64:
        return 0.709
    return 0.7213 / (1.0 + 1.079 / m)
