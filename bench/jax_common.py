"""Runners shared by the JAX contenders: a jitted ``value_and_grad`` + optax Adam step, and a
jitted value-only evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.workload import LEARNING_RATE, Params

__all__ = ["LossFn", "OptaxStepRunner", "UpdateRunner", "ValueRunner", "to_device"]

# loss(params, key, x) -> scalar negative ELBO per datapoint
LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def to_device(params: Params) -> dict[str, jax.Array]:
    """Moves NumPy parameters to JAX arrays (float32)."""
    return {name: jnp.asarray(value) for name, value in params.items()}


class UpdateRunner:
    """A jitted ``update(state, x) -> (state, loss)`` on a fixed batch ``x``; each
    :meth:`step` blocks until the new state is computed."""

    def __init__(self, update: Callable[[Any, Any], tuple[Any, Any]], state: Any, x: Any) -> None:
        self._update, self._state, self._x = jax.jit(update), state, jnp.asarray(x)
        self._loss: jax.Array | None = None

    def step(self) -> None:
        """One update; blocks until the new state is computed."""
        self._state, self._loss = self._update(self._state, self._x)
        jax.block_until_ready((self._state, self._loss))

    def loss(self) -> float:
        """Loss of the last update (at the parameters before it)."""
        return float(self._loss)


class OptaxStepRunner(UpdateRunner):
    """``jit(value_and_grad(loss))`` plus an ``optax.adam`` update, as one compiled step.

    The PRNG key is threaded through the step (split inside it), so every step draws fresh
    samples and nothing is computed outside the compiled function. It is a raw
    ``jax.random.PRNGKey``, the kind NumPyro's SVI state carries: a typed ``jax.random.key``
    returned by a jitted function is rebuilt and re-checked in Python on every call
    (≈ 15–40 µs per step in jax 0.10.2 on the 2-core benchmark machine), a cost that would
    fall on every contender except NumPyro.
    """

    def __init__(self, loss_fn: LossFn, params: Params, x: np.ndarray, seed: int = 0) -> None:
        optimizer = optax.adam(LEARNING_RATE)

        def step(state: tuple[Any, Any, jax.Array], x: jax.Array) -> tuple[Any, jax.Array]:
            params, opt_state, key = state
            key, sub = jax.random.split(key)
            loss, grads = jax.value_and_grad(loss_fn)(params, sub, x)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), loss

        device_params = to_device(params)
        state = (device_params, optimizer.init(device_params), jax.random.PRNGKey(seed))
        super().__init__(step, state, x)


class ValueRunner:
    """``jit(loss)`` evaluated on fixed parameters with a fresh key each call."""

    def __init__(self, loss_fn: LossFn, params: Params, x: np.ndarray, seed: int = 0) -> None:
        def evaluate(params: Any, key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            key, sub = jax.random.split(key)
            return key, loss_fn(params, sub, x)

        self._params = to_device(params)
        self._key = jax.random.PRNGKey(seed)  # raw, as in OptaxStepRunner
        self._x = jnp.asarray(x)
        self._evaluate = jax.jit(evaluate)
        self._loss: jax.Array | None = None

    def step(self) -> None:
        """One evaluation; blocks until it is computed."""
        self._key, self._loss = self._evaluate(self._params, self._key, self._x)
        jax.block_until_ready((self._key, self._loss))

    def loss(self) -> float:
        """Value of the last evaluation."""
        return float(self._loss)
