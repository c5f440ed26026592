"""The formula language (flows/formula.py) and the step registry (flows/registry.py)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flows
from flows import Bijection, Flow, Formula, FormulaError, Group, Option, Step, parse
from flows.formula import MAX_DEPTH
from flows.options import JITTER

# --------------------------------------------------------------------------- accepted formulas


@pytest.mark.parametrize(("text", "items"), [
    ("planar", (Step("planar"),)),
    ("planar*2", (Step("planar", (), 2),)),
    # Repeats written apart stay apart: two items, not planar*3.
    ("planar-planar*2", (Step("planar"), Step("planar", (), 2))),
    # Order is application order, left first (PyMC3's).
    ("hh-planar*2", (Step("hh"), Step("planar", (), 2))),
    ("Scale-Loc", (Step("scale"), Step("loc"))),
    ("scale - loc", (Step("scale"), Step("loc"))),
    ("  SCALE -\tHH * 3 - loc ", (Step("scale"), Step("hh", (), 3), Step("loc"))),
    ("householder", (Step("hh"),)),
    ("HouseHolder*4", (Step("hh", (), 4),)),
    ("shift", (Step("loc"),)),
    ("planar(jitter=0.5)*3", (Step("planar", (("jitter", 0.5),), 3),)),
    ("Planar( Jitter = 2 )", (Step("planar", (("jitter", 2.0),)),)),
    ("planar(jitter=.5e-1)", (Step("planar", (("jitter", 0.05),)),)),
    ("(planar-radial)*2-loc",
     (Group(Formula((Step("planar"), Step("radial"))), 2), Step("loc"))),
    ("((planar-hh*2)*3-radial)*2",
     (Group(Formula((Group(Formula((Step("planar"), Step("hh", (), 2))), 3),
                     Step("radial"))), 2),)),
])
def test_accepted_formulas_parse_to_their_tree(text: str, items: tuple) -> None:
    assert parse(text) == Formula(items)


def test_steps_unrolls_repeats_and_groups_in_application_order() -> None:
    names = [s.name for s in parse("scale-(planar-hh*2)*2-loc").steps()]
    assert names == ["scale", "planar", "hh", "hh", "planar", "hh", "hh", "loc"]


@pytest.mark.parametrize(("text", "canonical"), [
    ("Scale - HH*3 - Loc", "scale-hh*3-loc"),
    ("householder-shift", "hh-loc"),
    ("planar*1", "planar"),
    ("PLANAR( JITTER = 1 ) * 2", "planar(jitter=1.0)*2"),
    ("(Planar-Householder)*2-loc", "(planar-hh)*2-loc"),
    ("((planar)*1)*2", "((planar)*1)*2"),
])
def test_str_is_canonical(text: str, canonical: str) -> None:
    formula = parse(text)
    assert str(formula) == canonical
    assert parse(str(formula)) == formula


def test_parse_passes_a_formula_through_and_refuses_non_strings() -> None:
    formula = parse("planar*2")
    assert parse(formula) is formula
    with pytest.raises(FormulaError, match="a formula is a string, not int"):
        parse(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors

def _caret(err: FormulaError) -> tuple[str, int]:
    """The formula line and the caret's column as drawn in the message."""
    *_, shown, caret = str(err).splitlines()
    assert caret.strip() == "^"
    return shown[2:], caret.index("^") - 2


@pytest.mark.parametrize(("text", "column", "words"), [
    ("", 0, "empty"),
    ("   ", 0, "empty"),
    ("planar--loc", 7, "empty step"),
    ("-planar", 0, "empty step"),
    ("planar-", 7, "empty step"),
    ("panar*10", 0, "did you mean 'planar'"),
    ("scale - panar", 8, "did you mean 'planar'"),  # the caret counts the spaces
    ("householdr", 0, "did you mean 'householder'"),
    ("xyzzy", 0, "known flows: "),
    ("planar*", 7, "positive integer"),
    ("planar*0", 7, "positive integer"),
    ("planar*00", 7, "positive integer"),
    ("planar*1.5", 7, "positive integer"),
    ("planar*x", 7, "positive integer"),
    ("planar*-1", 7, "positive integer"),
    ("planar*2*3", 8, "single count"),
    ("planar*1000001", 7, "limit"),
    ("planar(foo=1)", 7, "unknown option 'foo'"),
    ("planar(jiter=1)", 7, "did you mean 'jitter'"),
    ("planar(jitter)", 13, "expected '='"),
    ("planar(jitter=)", 14, "number or a word"),
    ("planar(jitter=abc)", 14, "expected a number"),
    ("planar(jitter=-1)", 14, "at least 0"),
    ("planar(jitter=1e999)", 14, "finite"),
    ("planar(,)", 7, "option name"),
    ("planar(jitter=1;)", 15, "unexpected character ';'"),
    ("planar(jitter=1 loc)", 16, "',' or ')'"),
    ("planar(jitter=1,jitter=2)", 16, "given twice"),
    ("planar(jitter=1", 6, "never closed"),
    ("(planar-loc*2", 0, "never closed"),
    ("planar-loc)*2", 10, "closes nothing"),
    ("(planar-loc)*2)", 14, "closes nothing"),
    ("(planar-loc)", 12, "needs a count"),
    ("(planar-loc)-hh", 12, "needs a count"),
    ("(planar-loc)*0", 13, "positive integer"),
    ("()*2", 1, "empty group"),
    ("planar loc", 0, "did you mean 'planar'"),  # spaces are ignored: this is 'planarloc'
    ("planar(jitter=1)(jitter=2)", 16, "expected '-'"),
    ("planar#", 6, "unexpected character '#'"),
])
def test_bad_formula_raises_with_caret_at_the_culprit(text: str, column: int, words: str
                                                      ) -> None:
    with pytest.raises(FormulaError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert words in err.reason
    assert err.column == column
    assert _caret(err) == (text, column)


def test_nesting_past_the_limit_is_a_formula_error_not_a_recursion_error() -> None:
    ok = "(" * MAX_DEPTH + "planar" + ")*1" * MAX_DEPTH
    assert parse(ok).steps() == [Step("planar")]
    with pytest.raises(FormulaError, match="nested deeper") as info:
        parse("(" * (MAX_DEPTH + 1) + "planar" + ")*1" * (MAX_DEPTH + 1))
    assert info.value.column == MAX_DEPTH
    with pytest.raises(FormulaError, match="nested deeper"):
        parse("(" * 5000 + "planar" + ")*1" * 5000)


# --------------------------------------------------------------------------- property tests

_NAMES = {"planar": ("planar",), "radial": ("radial",), "scale": ("scale",),
          "loc": ("loc", "shift"), "hh": ("hh", "householder")}


@st.composite
def _spelling(draw: st.DrawFn, word: str) -> str:
    """``word`` in random letter case."""
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))


_SPACE = st.sampled_from(["", "", " ", "  ", "\t"])
_COUNT = st.integers(1, 3)


@st.composite
def _written_step(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A step as a user might write it, and the canonical names it unrolls to."""
    name = draw(st.sampled_from(sorted(_NAMES)))
    text = draw(_spelling(draw(st.sampled_from(_NAMES[name]))))
    if draw(st.booleans()):
        jitter = draw(st.floats(0, 1e6, allow_nan=False))
        value = draw(st.sampled_from([repr(jitter), f"{jitter:e}", f"{jitter:.3f}"]))
        text += f"({draw(_SPACE)}{draw(_spelling('jitter'))}{draw(_SPACE)}={value})"
    count = 1
    if draw(st.booleans()):
        count = draw(_COUNT)
        text += f"{draw(_SPACE)}*{draw(_SPACE)}{count}"
    return text, [name] * count


def _written_formula(item: st.SearchStrategy) -> st.SearchStrategy:
    def join(parts: list[tuple[str, list[str]]], space: str) -> tuple[str, list[str]]:
        return f"{space}-{space}".join(p[0] for p in parts), [n for p in parts for n in p[1]]

    return st.builds(join, st.lists(item, min_size=1, max_size=3), _SPACE)


def _group(inner: st.SearchStrategy) -> st.SearchStrategy:
    def wrap(body: tuple[str, list[str]], count: int) -> tuple[str, list[str]]:
        return f"({body[0]})*{count}", body[1] * count

    return st.builds(wrap, _written_formula(inner), _COUNT)


_VALID = _written_formula(st.recursive(_written_step(), _group, max_leaves=6))


@settings(max_examples=200, deadline=None)
@given(_VALID)
def test_generated_formulas_parse_to_what_was_written_and_round_trip(
        written: tuple[str, list[str]]) -> None:
    text, names = written
    formula = parse(text)
    assert [s.name for s in formula.steps()] == names
    canonical = str(formula)
    assert parse(canonical) == formula
    assert str(parse(canonical)) == canonical


def _parses_or_formula_error(text: str) -> None:
    try:
        result = parse(text)
    except FormulaError as err:
        assert 0 <= err.column <= len(text)
        assert str(err).splitlines()[-1].strip() == "^"
    else:
        assert isinstance(result, Formula)
        assert parse(str(result)) == result


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_parses_or_raises_formula_error(text: str) -> None:
    _parses_or_formula_error(text)


_PIECES = ["planar", "Radial", "hh", "householder", "loc", "scale", "panar", "jitter",
           "jiter", "x", "true", "e", "(", ")", "*", "-", "=", ",", ".", " ", "0", "1", "2",
           "007", "1.5", "1e3", "1e999", "99999999999999999999", "é", "\n"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join))
def test_text_from_the_formula_alphabet_parses_or_raises_formula_error(text: str) -> None:
    _parses_or_formula_error(text)


# --------------------------------------------------------------------------- registry

class _Shear(Bijection):
    """x = z + a z_0 e_{d-1} (a shear, volume-preserving), raised to ``power`` steps."""

    name = "shear"
    aliases = ("skew",)
    summary = "a test shear"
    options: ClassVar[dict[str, Option]] = {
        "jitter": JITTER, "power": Option(int, 1, "how many shears", minimum=1)}
    min_dim = 2

    def init(self, key: jax.Array, jitter: float) -> dict:
        return {"a": 1.0 + self.noise(key, jitter, ())}

    def forward(self, params: dict, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        return z.at[-1].add(self.power * params["a"] * z[0]), jnp.zeros((), z.dtype)

    def inverse(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return x.at[-1].add(-self.power * params["a"] * x[0]), jnp.zeros((), x.dtype)


@pytest.mark.usefixtures("restore_registry")
def test_registered_step_is_usable_in_formulas_and_flows() -> None:
    assert "shear" not in flows.available()
    assert flows.register(_Shear) is _Shear
    assert flows.register(_Shear) is _Shear  # the same class again is a no-op
    assert "shear" in flows.available() and "skew" not in flows.available()
    assert flows.lookup("SKEW") is _Shear

    formula = parse("Skew(power=2)*2-loc")
    assert formula.items == (Step("shear", (("power", 2),), 2), Step("loc"))
    assert str(formula) == "shear(power=2)*2-loc"
    with pytest.raises(FormulaError, match="expected an integer"):
        parse("shear(power=1.5)")
    with pytest.raises(FormulaError, match="did you mean 'shear'"):
        parse("sheer")

    flow = Flow(formula, 3)
    params = flow.init(jax.random.key(0), jitter=0.0)
    z = jnp.array([1.0, 2.0, 3.0])
    x, log_det = flow.forward(params, z)
    # Two steps of power 2 with a = 1: the last coordinate gains 4 z_0.
    np.testing.assert_allclose(x, [1.0, 2.0, 7.0])
    assert log_det == 0.0
    np.testing.assert_allclose(flow.inverse(params, x)[0], z)
    with pytest.raises(ValueError, match="needs dimension >= 2"):
        Flow("shear", 1)


@pytest.mark.usefixtures("restore_registry")
def test_registering_a_taken_or_malformed_name_raises() -> None:
    class Impostor(_Shear):
        name = "planar"
        aliases = ()

    class AliasThief(_Shear):
        name = "fresh"
        aliases = ("householder",)

    class Bad(_Shear):
        name = "my-flow"
        aliases = ()

    before = flows.available()
    with pytest.raises(ValueError, match="'planar' is already taken by Planar"):
        flows.register(Impostor)
    with pytest.raises(ValueError, match="'householder' is already taken by Householder"):
        flows.register(AliasThief)
    with pytest.raises(ValueError, match="lower-case identifier"):
        flows.register(Bad)
    # A refused registration leaves nothing behind.
    assert flows.available() == before
    assert flows.lookup("planar").__name__ == "Planar"
