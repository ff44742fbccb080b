"""Reading compiled programs: how many random numbers one device draws (the sharding
check, ``bench/sharding_check.py``, and ``tests/test_sharding.py`` count them the same way)."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["noise_elements"]

_U32_ARRAY = re.compile(r"\bu32\[(\d+(?:,\d+)*)\]")


def noise_elements(hlo: str) -> int:
    """Random numbers one device draws at once in a compiled (per-device) HLO module.

    Counter-based random bits are the only 32-bit unsigned integer arrays of the noise's
    size in these programs (threefry hashes ``u32`` counters into ``u32`` bits; keys are
    ``u32[2]``), so the largest ``u32`` array of the module is one device's noise, whatever
    the sampler's implementation or names (jelbo's unrolled threefry on CPU, JAX's own
    lowering elsewhere). After SPMD partitioning, shapes are per device: a device that draws
    only its shard shows the shard's size, one that draws the whole batch shows the batch's.
    """
    sizes = [0]
    for match in _U32_ARRAY.finditer(hlo):
        sizes.append(int(np.prod([int(d) for d in match.group(1).split(",")])))
    return max(sizes)
