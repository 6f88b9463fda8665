"""The alert lifecycle's Numba kernel (``pipeline.alerting.lifecycle.step_lifecycle`` calls it).

Here, not in ``pipeline.alerting.lifecycle``: that module's states and constants are also what
the linking process's cluster alerts use, and that process runs no kernel. Importing Numba
(and LLVM) there cost about 65 MB of its resident memory (docs/benchmarks.md, "Replay").
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def step_rows(group: np.ndarray, minute: np.ndarray, cond: np.ndarray, for_minutes: int, max_gap: int,
              resolve_minutes: int, pending: np.ndarray, last_true: np.ndarray, firing: np.ndarray, now_minute: int,
              fired: np.ndarray, res_group: np.ndarray, res_minute: np.ndarray, res_row: np.ndarray) -> int:
    none = -(2**62)
    n_res = 0
    for i in range(group.shape[0]):
        g = group[i]
        m = minute[i]
        if firing[g] != none and m >= last_true[g] + 1 + resolve_minutes:
            res_group[n_res] = g
            res_minute[n_res] = last_true[g] + 1 + resolve_minutes
            res_row[n_res] = i
            n_res += 1
            firing[g] = none
        if cond[i]:
            if pending[g] == none or m > last_true[g] + 1 + max_gap:
                pending[g] = m
            last_true[g] = m
            if firing[g] == none and m - pending[g] >= for_minutes:
                firing[g] = m
                fired[i] = True
        elif m > last_true[g] + max_gap:  # past the gap a pending run survives: the next true frame restarts it
            pending[g] = none
    for g in range(firing.shape[0]):
        if firing[g] != none and now_minute >= last_true[g] + 1 + resolve_minutes:
            res_group[n_res] = g
            res_minute[n_res] = last_true[g] + 1 + resolve_minutes
            res_row[n_res] = group.shape[0]
            n_res += 1
            firing[g] = none
    return n_res
