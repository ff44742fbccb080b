"""A minimal stand-in for ``jelbo.parameters`` (used only until the library's lands).

Stan's transforms: exp for positive, scaled logistic for intervals (bounds may be callables of
earlier parameters), additive log-ratio for simplexes, exp-increments for (positive) ordered.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Constraint(NamedTuple):
    kind: str
    shape: tuple
    low: Any = None
    high: Any = None

    @property
    def free(self) -> int:
        n = math.prod(self.shape)
        return n - 1 if self.kind == "simplex" else n


def real(shape=()):
    return Constraint("real", tuple(shape))


def positive(shape=()):
    return Constraint("positive", tuple(shape))


def interval(low, high, shape=()):
    return Constraint("interval", tuple(shape), low, high)


def simplex(k):
    return Constraint("simplex", (k,))


def ordered(k):
    return Constraint("ordered", (k,))


def positive_ordered(k):
    return Constraint("positive_ordered", (k,))


class ParameterSpace:
    def __init__(self, spec: dict):
        self.spec = dict(spec)
        self.dim = sum(c.free for c in self.spec.values())

    def constrain(self, u):
        batch = u.shape[:-1]
        params, log_det, i = {}, jnp.zeros(batch, u.dtype), 0
        for name, c in self.spec.items():
            x = u[..., i : i + c.free]
            i += c.free
            if c.kind == "real":
                y = x
            elif c.kind == "positive":
                y, log_det = jnp.exp(x), log_det + jnp.sum(x, -1)
            elif c.kind == "interval":
                lo = c.low(params) if callable(c.low) else c.low
                hi = c.high(params) if callable(c.high) else c.high
                lo, hi = jnp.asarray(lo)[..., None], jnp.asarray(hi)[..., None]
                y = lo + (hi - lo) * jax.nn.sigmoid(x)
                jac = jnp.log(hi - lo) + jax.nn.log_sigmoid(x) + jax.nn.log_sigmoid(-x)
                log_det = log_det + jnp.sum(jac, -1)
            elif c.kind == "simplex":
                z = jnp.concatenate([x, jnp.zeros((*batch, 1), x.dtype)], -1)
                y = jax.nn.softmax(z, -1)
                log_det = log_det + jnp.sum(jax.nn.log_softmax(z, -1), -1)
            elif c.kind == "ordered":
                y = jnp.cumsum(jnp.concatenate([x[..., :1], jnp.exp(x[..., 1:])], -1), -1)
                log_det = log_det + jnp.sum(x[..., 1:], -1)
            elif c.kind == "positive_ordered":
                y, log_det = jnp.cumsum(jnp.exp(x), -1), log_det + jnp.sum(x, -1)
            params[name] = y.reshape(*batch, *c.shape)
        return params, log_det

    def unconstrain(self, params):
        parts, done = [], {}
        for name, c in self.spec.items():
            y = jnp.asarray(params[name])
            batch = y.shape[: y.ndim - len(c.shape)]
            y = y.reshape(*batch, -1)
            if c.kind == "real":
                x = y
            elif c.kind == "positive":
                x = jnp.log(y)
            elif c.kind == "interval":
                lo = c.low(done) if callable(c.low) else c.low
                hi = c.high(done) if callable(c.high) else c.high
                lo, hi = jnp.asarray(lo)[..., None], jnp.asarray(hi)[..., None]
                t = (y - lo) / (hi - lo)
                x = jnp.log(t) - jnp.log1p(-t)
            elif c.kind == "simplex":
                x = jnp.log(y[..., :-1]) - jnp.log(y[..., -1:])
            elif c.kind == "ordered":
                x = jnp.concatenate([y[..., :1], jnp.log(jnp.diff(y, axis=-1))], -1)
            elif c.kind == "positive_ordered":
                x = jnp.log(jnp.diff(y, axis=-1, prepend=0.0))
            done[name] = params[name]
            parts.append(x)
        return jnp.concatenate(parts, -1)
