r"""Opt-in checks of parameter *values* (negative scales, NaN, ``df <= 0``).

Shapes are checked at construction, at trace time, always. Values cannot be: under ``jit``
they are not known until the computation runs, and checking them on every call would cost a
device-to-host transfer. Without a check an invalid value does not raise; it gives NaN (a
negative or NaN scale, ``df <= 0``) or a meaningless finite number. To check:

- eagerly (concrete arrays), :func:`check_parameters` raises ``ValueError`` at once, naming
  the family, the parameter, the requirement and the first offending entry;
- under ``jit``, ``grad`` or ``vmap`` it records a :mod:`jax.experimental.checkify` check,
  which :func:`checked` (or ``checkify.checkify``) turns into a ``ValueError`` with the
  same message after the call::

      def loss(params, key, x):
          q = jelbo.check_parameters(encoder(params, x))
          return -jelbo.elbo(key, q, log_lik, prior, x).elbo.mean()

      safe_loss = jelbo.checked(jax.jit(loss))   # raises on a bad parameter value

Each family states its requirements in the hook ``Distribution._parameter_checks`` (the
default: no parameter is NaN); families that add constraints override it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.experimental import checkify

from jelbo import _checks
from jelbo.distributions.base import Distribution

__all__ = ["check_parameters", "checked"]

D = TypeVar("D", bound=Distribution)


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, Tracer)


def _staged() -> bool:
    """Whether the computation being traced is staged out (``jit``, ``lax.scan``, ...), where a
    ``checkify`` check must be functionalized; eager ``vmap`` and ``grad`` are not.

    Reads JAX's current trace stack (private API); if that changes, it says False and JAX's
    own error remains.
    """
    try:
        from jax._src import core
        from jax._src.interpreters import partial_eval as pe

        trace = core.trace_ctx.trace
        while trace is not None:
            if isinstance(trace, pe.DynamicJaxprTrace):
                return True
            trace = getattr(trace, "parent_trace", None)
    except (ImportError, AttributeError):  # pragma: no cover - a future JAX
        return False
    return False


def _under_checkify() -> bool:
    """Whether ``checkify.checkify`` (or :func:`checked`, which calls it) is tracing us: its
    frames are on the stack while it traces the function it functionalizes."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "") == "jax._src.checkify":
            return True
        frame = frame.f_back
    return False


def check_parameters(dist: D) -> D:
    """Checks the values of ``dist``'s parameters and returns ``dist`` unchanged.

    Eagerly it raises ``ValueError`` naming the parameter, its requirement (e.g. "> 0 and
    finite"), how many entries violate it and the first one. Traced (inside ``jit``,
    ``grad``, ``vmap``), it adds a ``checkify`` check with the same message: wrap the
    function with :func:`checked` (or ``jax.experimental.checkify.checkify``) to get the
    error; without that wrapper it raises ``ValueError`` at trace time saying so, so a check
    is never silently skipped. (One exception to the message, not to the refusal: once
    :func:`checked` has traced a function, JAX's trace cache gives a plain ``jax.jit`` of the
    same function and shapes that trace, check included, without calling this function
    again; JAX then refuses it with its own "Cannot abstractly evaluate a checkify.check
    which was not functionalized".)

    Args:
        dist: any jelbo distribution.

    Returns:
        ``dist``, so that the call can wrap a constructor.
    """
    _checks.check_instance(dist, Distribution, "dist")
    family = type(dist).__name__
    for name, ok, requirement in cast(Any, dist)._parameter_checks():
        ok = jnp.asarray(ok, bool)
        message = f"{family} `{name}` must be {requirement}"
        if _is_concrete(ok):
            bad = ~np.asarray(ok)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"{message}; {int(bad.sum())} of {bad.size} entries are not (the first at "
                    f"index {index})."
                )
        else:
            if _staged() and not _under_checkify():
                # JAX would only fail when lowering, with "Cannot abstractly evaluate a
                # checkify.check which was not functionalized".
                raise ValueError(
                    f"jelbo.check_parameters({family}) was traced inside jax.jit (or another "
                    "staged transformation: lax.scan, lax.map, ...) that is not wrapped by "
                    "jelbo.checked, and a compiled function cannot raise. Wrap the jitted "
                    "function, jelbo.checked(jax.jit(f)) (it raises this check's ValueError "
                    "after the call), or call check_parameters outside jit, on concrete "
                    "parameters."
                )
            checkify.check(
                jnp.all(ok),
                message + "; {bad} of " + str(ok.size) + " entries are not.",
                bad=jnp.sum(~ok),
            )
    return dist


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its :func:`check_parameters` checks enforced, also under ``jit``.

    ``checkify.checkify(fn, errors=checkify.user_checks)``, then ``ValueError`` with the
    failed check's message (as :func:`check_parameters` raises eagerly). Wrap the jitted
    function (``checked(jax.jit(f))``), not the other way round: the error is raised
    outside the compiled computation.
    """
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err, out = checkified(*args, **kwargs)
        message = err.get()
        if message is not None:
            raise ValueError(message)
        return out

    return wrapper
