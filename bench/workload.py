r"""The benchmark workload: one training step of a linear VAE, shared by every contender.

Model (float32), for a batch ``x`` of shape ``(B, D)``:

- encoder ``[mu, log_var] = x @ enc_w + enc_b`` with ``enc_w`` of shape ``(D, 2K)``,
  ``q(z|x) = N(mu, diag(exp(log_var)))``;
- prior ``p(z) = N(0, I_K)``;
- linear decoder ``p(x|z) = N(z @ dec_w + dec_b, I_D)`` (unit variance) with ``dec_w`` ``(K, D)``;
- loss: the negative ELBO averaged over the batch, with ``S`` reparameterized samples per
  datapoint and the analytic KL,

.. math::
    -\frac1B\sum_b\Big[\frac1S\sum_s \log\mathcal N(x_b; z_{sb} W + c, I)
    - \mathrm{KL}(q(z|x_b)\,\|\,p(z))\Big];

a step is value + gradient + one Adam update (learning rate :data:`LEARNING_RATE`). The
value-only contenders evaluate the same ELBO with the classic recipe's unnormalized
reconstruction term :math:`-\tfrac12\lVert x - \mathrm{decoder}(z)\rVert^2` (it drops
:math:`-\tfrac D2\log 2\pi`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEARNING_RATE",
    "LOG_2PI",
    "SIZES",
    "Params",
    "Size",
    "init_params",
    "make_data",
]

LEARNING_RATE = 1e-3
LOG_2PI = math.log(2.0 * math.pi)

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Size:
    """One benchmark size: batch ``B``, data dim ``D``, latent dim ``K``, samples ``S``."""

    B: int
    D: int
    K: int
    S: int

    @property
    def label(self) -> str:
        """``"B=256,D=64,K=8,S=32"``."""
        return f"B={self.B},D={self.D},K={self.K},S={self.S}"

    @classmethod
    def parse(cls, text: str) -> Size:
        """Inverse of :attr:`label`; also accepts ``"256,64,8,32"``."""
        parts = [p.split("=")[-1] for p in text.split(",")]
        b, d, k, s = (int(p) for p in parts)
        return cls(b, d, k, s)


SIZES: tuple[Size, ...] = (Size(256, 64, 8, 1), Size(256, 64, 8, 32), Size(1024, 784, 32, 8))


def init_params(size: Size, seed: int = 0) -> Params:
    """Initial parameters (float32 NumPy arrays), identical for every contender."""
    rng = np.random.default_rng(seed)
    d, k = size.D, size.K
    return {
        "enc_w": (0.01 * rng.standard_normal((d, 2 * k))).astype(np.float32),
        "enc_b": np.zeros(2 * k, np.float32),
        "dec_w": (rng.standard_normal((k, d)) / math.sqrt(k)).astype(np.float32),
        "dec_b": np.zeros(d, np.float32),
    }


def make_data(size: Size, seed: int = 1) -> np.ndarray:
    """A fixed batch ``(B, D)`` drawn from a probabilistic-PCA model with ``K`` factors."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((size.K, size.D)) / math.sqrt(size.K)
    z = rng.standard_normal((size.B, size.K))
    x = z @ w + 0.5 * rng.standard_normal((size.B, size.D))
    return x.astype(np.float32)
