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
def leading_zeros64(x: np.uint64) -> int:
    """Count of leading zero bits of a 64-bit value (64 for zero)."""
    x = uint64(x)
    if x == 0:
        return 64
    n = 0
    if x <= uint64(0x00000000FFFFFFFF):
        n += 32
        x <<= uint64(32)
    if x <= uint64(0x0000FFFFFFFFFFFF):
        n += 16
        x <<= uint64(16)
    if x <= uint64(0x00FFFFFFFFFFFFFF):
        n += 8
        x <<= uint64(8)
    if x <= uint64(0x0FFFFFFFFFFFFFFF):
        n += 4
        x <<= uint64(4)
    if x <= uint64(0x3FFFFFFFFFFFFFFF):
        n += 2
        x <<= uint64(2)
    if x <= uint64(0x7FFFFFFFFFFFFFFF):
        n += 1
    return n


@njit(cache=True, nogil=True)
def hll_add(registers: np.ndarray, h: np.uint64, bits: int) -> None:
    """Add a hashed item to the sketch (registers has 2**bits entries)."""
    h = uint64(h)
    idx = h >> uint64(64 - bits)
    rest = h << uint64(bits)
    rank = leading_zeros64(rest) + 1
    cap = 64 - bits + 1
    if rank > cap:
        rank = cap
    if registers[idx] < rank:
        registers[idx] = rank


@njit(cache=True, nogil=True)
def hll_estimate(registers: np.ndarray) -> int:
    """Estimated number of distinct items, rounded to an integer."""
    m = registers.shape[0]
    total = 0.0
    zeros = 0
    for j in range(m):
        v = registers[j]
        total += 1.0 / float(np.uint64(1) << np.uint64(v))
        if v == 0:
            zeros += 1
    if zeros == m:
        return 0
    alpha = _alpha(m)
    estimate = alpha * m * m / total
    if estimate <= 2.5 * m and zeros > 0:
        estimate = m * math.log(m / zeros)
    return int(estimate + 0.5)


@njit(cache=True, nogil=True)
def _alpha(m: int) -> float:
    if m == 16:
        return 0.673
    if m == 32:
        return 0.697
    if m == 64:
        return 0.709
    return 0.7213 / (1.0 + 1.079 / m)


@njit(cache=True, nogil=True)
def hll_merge(into: np.ndarray, other: np.ndarray) -> None:
    """Union: register-wise maximum (sketches of equal size)."""
    for j in range(into.shape[0]):
        if other[j] > into[j]:
            into[j] = other[j]
