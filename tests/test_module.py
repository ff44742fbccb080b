"""Tests of jelbo.module: the one pytree base (Module, static_field) that distributions,
bijectors and objectives share."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jelbo
from jelbo.module import Module, is_static, static_field


class Affine1(Module):
    """y = scale * x + shift along ``axis`` (static)."""

    scale: jax.Array
    shift: jax.Array
    axis: int = static_field(default=-1)

    def __call__(self, x):
        return self.scale * x + self.shift


class Checked(Module):
    """Validates in __post_init__: unflattening must not run it."""

    value: jax.Array
    label: str = dataclasses.field(default="a", metadata={"static": True})

    def __post_init__(self):
        if not isinstance(self.value, jax.Array):
            raise TypeError("value must be an array")


class Options(Module, eq=True):
    num: int = static_field(default=1)
    weight: float = 1.0


class MoreOptions(Options):
    extra: str = static_field(default="x")


class Shifted(Affine1):
    """A subclass of a subclass: its fields follow the parent's."""

    offset: jax.Array = 0.0


def test_flatten_unflatten_round_trip_and_key_paths():
    m = Affine1(jnp.array([1.0, 2.0]), jnp.array(3.0), axis=0)
    leaves, treedef = jax.tree_util.tree_flatten(m)
    assert len(leaves) == 2 and leaves[0] is m.scale and leaves[1] is m.shift
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(back) is Affine1 and back.axis == 0
    assert back.scale is m.scale and back.shift is m.shift
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(m)[0]]
    assert paths == [".scale", ".shift"]
    nested = jelbo.MixtureSameFamily(jnp.zeros(2), jelbo.Normal(jnp.zeros((2, 3)), 1.0))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(nested)[0]]
    assert paths == [".mixture_logits", ".components.loc", ".components.scale"]


def test_static_fields_are_treedef_data_not_leaves():
    a = Affine1(jnp.ones(2), jnp.zeros(2), axis=0)
    b = Affine1(jnp.ones(2), jnp.zeros(2), axis=1)
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(
        Affine1(jnp.full(2, 5.0), jnp.ones(2), axis=0)
    )
    # both ways of marking a field static are the same
    assert [f.name for f in dataclasses.fields(Checked) if is_static(f)] == ["label"]
    assert jax.tree_util.tree_leaves(Checked(jnp.ones(1), label="b")) == [jnp.ones(1)]
    assert dataclasses.fields(Affine1)[2].metadata["static"] is True


def test_unflatten_bypasses_init_and_validation():
    m = Checked(jnp.ones(2))
    treedef = jax.tree_util.tree_structure(m)
    back = jax.tree_util.tree_unflatten(treedef, [object()])  # a placeholder, not an array
    assert type(back) is Checked and back.label == "a"
    with pytest.raises(TypeError, match="value must be an array"):
        Checked(1.0)


def test_jit_vmap_grad_through_a_module():
    traces = []

    @jax.jit
    def f(m, x):
        traces.append(m.axis)
        return jnp.sum(m(x))

    m = Affine1(jnp.array([1.0, 2.0]), jnp.array(0.5))
    x = jnp.array([3.0, 4.0])
    np.testing.assert_allclose(f(m, x), 12.0)
    f(Affine1(jnp.array([2.0, 2.0]), jnp.array(0.0)), x)  # new leaves: no retrace
    assert len(traces) == 1
    f(Affine1(jnp.array([2.0, 2.0]), jnp.array(0.0), axis=0), x)  # new static: retrace
    assert len(traces) == 2

    grads = jax.grad(lambda m: jnp.sum(m(x)))(m)
    assert isinstance(grads, Affine1) and grads.axis == -1
    np.testing.assert_allclose(grads.scale, x)
    np.testing.assert_allclose(grads.shift, 2.0)

    batch = Affine1(jnp.ones((3, 2)) * jnp.arange(3.0)[:, None], jnp.zeros(3))
    out = jax.vmap(lambda m: m(x))(batch)
    np.testing.assert_allclose(out, np.arange(3.0)[:, None] * np.asarray(x))


def test_equality_and_hash_identity_by_default_values_with_eq_true():
    a = Affine1(jnp.ones(2), jnp.zeros(2))
    same_values = Affine1(a.scale, a.shift)
    assert a == a and a != same_values  # identity: arrays have no single truth value
    assert hash(a) == object.__hash__(a) and len({a, same_values}) == 2
    assert Options(2, 0.5) == Options(2, 0.5) and Options(2) != Options(3)
    assert hash(Options(2, 0.5)) == hash(Options(2, 0.5))
    # inherited by subclasses, which compare their own fields too
    assert MoreOptions(2, extra="y") == MoreOptions(2, extra="y")
    assert MoreOptions(2, extra="y") != MoreOptions(2, extra="z")
    # a value-equal module can be a static argument
    jitted = jax.jit(lambda o, x: o.weight * x * o.num, static_argnums=0)
    np.testing.assert_allclose(jitted(Options(3, 2.0), 1.0), 6.0)
    # the objectives are eq=True
    assert jelbo.IWAE(4, "dreg") == jelbo.IWAE(4, "dreg")
    assert hash(jelbo.IWAE(4, "dreg")) == hash(jelbo.IWAE(num_samples=4, grad_estimator="dreg"))


def test_subclass_of_a_subclass_is_a_registered_dataclass():
    m = Shifted(jnp.ones(2), jnp.zeros(2), axis=0, offset=jnp.array(1.0))
    assert [f.name for f in dataclasses.fields(m)] == ["scale", "shift", "axis", "offset"]
    leaves, treedef = jax.tree_util.tree_flatten(m)
    assert len(leaves) == 3
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(back) is Shifted and back.axis == 0 and back.offset is m.offset
    assert isinstance(back, Module)


def test_modules_are_immutable():
    m = Affine1(jnp.ones(2), jnp.zeros(2))
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"immutable.*replace"):
        m.scale = jnp.zeros(2)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del m.shift
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError
        m.new_attribute = 1  # type: ignore[attr-defined]
    changed = dataclasses.replace(m, axis=0)
    assert changed.axis == 0 and m.axis == -1 and changed.scale is m.scale


def test_a_subclass_may_apply_the_dataclass_decorator_itself():
    @dataclasses.dataclass(frozen=True)
    class Legacy(Module):
        a: jax.Array
        b: float = 2.0

    m = Legacy(jnp.ones(2))
    assert jax.tree_util.tree_leaves(m)[1] == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.a = 1  # type: ignore[misc]
    back = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(m), [jnp.zeros(2), 3.0])
    assert type(back) is Legacy and back.b == 3.0


def test_repr_names_fields_and_shapes():
    m = Affine1(jnp.ones((2, 3), jnp.float32), 0.5, axis=1)
    assert repr(m) == "Affine1(scale=float32[2, 3], shift=0.5, axis=1)"
    assert repr(Options(2)) == "Options(num=2, weight=1.0)"


def test_public_names():
    assert jelbo.Module is Module and jelbo.static_field is static_field
    assert jelbo.distributions.static_field is static_field
    assert issubclass(jelbo.Distribution, Module) and issubclass(jelbo.bijectors.Bijector, Module)
    assert issubclass(jelbo.ELBO, Module)


def test_only_the_module_registers_pytrees():
    root = pathlib.Path(jelbo.__file__).parent
    registering = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "register_pytree" in path.read_text() or "register_dataclass" in path.read_text()
    )
    assert registering == ["module.py"]
