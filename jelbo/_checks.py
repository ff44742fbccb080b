"""Trace-time argument checks shared by the public functions.

Every check here looks only at static information (shapes, dtypes, Python values), so it
runs while JAX traces a function and raises before anything is computed.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def describe(x: Any) -> str:
    """A short ``dtype[shape]`` description of an array-like, for error messages."""
    shape = jnp.shape(x)
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"{dtype}{list(shape)}"


def check_key(key: Any, name: str = "key") -> None:
    """Raises ``TypeError`` unless ``key`` is a single PRNG key.

    Accepts a typed key (``jax.random.key``) of shape ``()`` or a legacy raw key
    (``jax.random.PRNGKey``), a ``uint32`` array of shape ``(2,)``.
    """
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape == ():
            return
        raise TypeError(
            f"`{name}` must be a single PRNG key of shape (); got a key array of shape "
            f"{shape}. Split it outside and vmap, or pass one key."
        )
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):
        return
    raise TypeError(
        f"`{name}` must be a PRNG key from jax.random.key(seed) (or the legacy "
        f"jax.random.PRNGKey(seed)); got {describe(key)}."
    )


def check_positive_int(value: Any, name: str) -> int:
    """Returns ``value`` if it is a Python int >= 1, else raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be a Python int >= 1 (it is static); got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1; got {value}.")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")
    return value


def broadcast_shapes(*named_shapes: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """``np.broadcast_shapes`` with an error that names every argument and its shape."""
    try:
        return tuple(np.broadcast_shapes(*(shape for _, shape in named_shapes)))
    except ValueError:
        listed = ", ".join(f"`{name}` {tuple(shape)}" for name, shape in named_shapes)
        raise ValueError(f"Shapes do not broadcast: {listed}.") from None


def check_instance(value: Any, cls: type, name: str, what: str = "a jelbo distribution") -> None:
    """Raises ``TypeError`` naming ``name`` unless ``value`` is an instance of ``cls``.

    The class is passed in (e.g. ``Distribution``) so that this module imports nothing of
    jelbo's.
    """
    if not isinstance(value, cls):
        raise TypeError(f"`{name}` must be {what}; got {type(value).__name__}.")


def check_same_event(q: Any, p: Any, names: tuple[str, str] = ("q", "p")) -> None:
    """Raises ``ValueError`` naming both shapes unless ``q`` and ``p`` share an event shape."""
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"Event shapes differ: `{names[0]}` ({type(q).__name__}) has event shape "
            f"{q.event_shape} (batch {q.batch_shape}), `{names[1]}` ({type(p).__name__}) has "
            f"event shape {p.event_shape} (batch {p.batch_shape})."
        )
    # Categorical-like families share event shape () whatever their number of categories.
    cq, cp = getattr(q, "num_categories", None), getattr(p, "num_categories", None)
    if cq is not None and cp is not None and cq != cp:
        raise ValueError(
            f"`{names[0]}` ({type(q).__name__}) and `{names[1]}` ({type(p).__name__}) need the "
            f"same number of categories; got {cq} and {cp} (parameters of shape "
            f"{jnp.shape(q.logits)} and {jnp.shape(p.logits)})."
        )


def check_broadcasts_to(
    shape: tuple[int, ...], name: str, target: tuple[int, ...], what: str = "shape"
) -> None:
    """Raises ``ValueError`` unless ``shape`` broadcasts to exactly ``target``.

    Broadcasting must not grow ``target``: a ``beta`` of shape ``(3, 1)`` against a batch
    ``(3,)`` would silently turn one value per datapoint into a ``(3, 3)`` table.

    Args:
        shape: the static shape of the argument (it may be traced).
        name: the argument's name, for the message.
        target: the shape it must broadcast to.
        what: what ``target`` is, e.g. "`q`'s batch shape", for the message.
    """
    shape, target = tuple(shape), tuple(target)
    try:
        ok = tuple(np.broadcast_shapes(shape, target)) == target
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"`{name}` has shape {shape}, which does not broadcast to {what} {target}: give "
            "one value per datapoint, or one for all."
        )


def check_real(value: Any, name: str) -> None:
    """Raises ``TypeError`` unless ``value`` is a real number or a real floating/integer array."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"`{name}` must be a real number or array; got {value!r}.")
    try:
        dtype = jnp.result_type(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be a real number or array; got {type(value).__name__}."
        ) from None
    if dtype == jnp.bool_ or not (
        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    ):
        raise TypeError(f"`{name}` must be real-valued; got {describe(value)}.")


def check_alpha(alpha: Any) -> float:
    """Returns the Rényi ``alpha`` as a Python float if it is finite and >= 0, else raises."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise TypeError(
            f"`alpha` must be a Python float (it is static); got {type(alpha).__name__}."
        )
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"`alpha` must be finite and >= 0 for a lower bound; got {alpha}.")
    return float(alpha)


def check_callable(fn: Any, name: str) -> None:
    """Raises ``TypeError`` unless ``fn`` is callable."""
    if not callable(fn):
        raise TypeError(f"`{name}` must be callable; got {type(fn).__name__}.")


def check_leading_axes(tree: Any, name: str, batch: tuple[int, ...]) -> None:
    """Raises ``ValueError`` unless every leaf of ``tree`` (or ``None``) leads with ``batch``."""
    if tree is None:
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = tuple(jnp.shape(leaf))
        if shape[: len(batch)] != tuple(batch):
            hint = ""
            common = 0  # how many leading axes agree
            while common < min(len(shape), len(batch)) and shape[common] == batch[common]:
                common += 1
            if common > 0:
                hint = (
                    f" If q's trailing batch axes {tuple(batch[common:])} are several latent "
                    "variables of one datapoint, make them part of the event: "
                    f"jelbo.Independent(q, {len(batch) - common}) has batch shape "
                    f"{tuple(batch[:common])}."
                )
            raise ValueError(
                f"`{name}`{jax.tree_util.keystr(path)} has shape {shape}, but its leading axes "
                f"must equal `q`'s batch shape {tuple(batch)}: one datapoint per posterior." + hint
            )


def check_scalar_per_example(values: Any, name: str, n: int) -> None:
    """Raises ``ValueError`` unless ``values``, ``name`` vmapped over n examples, is ``(n,)``."""
    shape = tuple(jnp.shape(values))
    if shape != (n,):
        raise ValueError(
            f"`{name}` must return a scalar log p(x|z) for one latent and one datapoint; it "
            f"returned shape {shape[1:]}. Sum over the data dimensions."
        )


def check_reparameterized(q: Any, what: str) -> None:
    """Raises ``ValueError`` unless ``q`` can be sampled differentiably (``what`` needs it)."""
    if not q.is_reparameterized:
        raise ValueError(
            f"{what} differentiates through samples of q, but {type(q).__name__} cannot be "
            "reparameterized. Use the score-function estimators, which work for any q: "
            "jelbo.ELBO(grad_estimator='score') or jelbo.IWAE(grad_estimator='vimco'); "
            "or a continuous q (Normal, MultivariateNormalTriL, Laplace, StudentT)."
        )
