"""The menu engine on a toy flow: it pages, goes back and home, re-asks with a reason, runs
steps, and never keeps a secret. It knows nothing about money, so neither does this test."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ussd_app.ussd import gsm7
from ussd_app.ussd.engine import RESUME, Choice, Context, Engine, Option, Retry, Screen, Step, _copied

FRUITS = [[f"f{i}", f"Fruit number {i:02d} with a long enough name"] for i in range(1, 13)]


def remember_secret(ctx):
    ctx.data["secret_length"] = len(ctx.secret)
    return "ok" if ctx.secret == "4321" else "wrong"


TOY = {
    "toy": {
        "home": Screen(
            "home",
            "Toy",
            options=(
                Option("Pick a fruit", "fruits"),
                Option("Say a word", "word"),
                Option("Secret", "secret"),
            ),
        ),
        "fruits": Screen("a long list", "Fruits:", items="fruits", pick=("picked", "fruit")),
        "picked": Screen("the pick", "You picked {fruit}", end=True),
        "word": Screen(
            "a word",
            "Say a word",
            choices=(Choice(lambda s: s if s.isalpha() else None, "echo", save="word"),),
        ),
        "echo": Screen("the word", "You said {word}", end=True),
        "secret": Screen(
            "a PIN", "Secret?", choices=(Choice(lambda s: s if len(s) == 4 else None, "check"),), secret=True
        ),
        "check": Step("check it", remember_secret, {"ok": "in", "wrong": Retry("secret", "No.")}),
        "in": Screen("inside", "In", end=True),
    }
}


@pytest.fixture
def engine():
    return Engine(TOY)


def start(engine, **data):
    ctx = Context(phone="+254712000111", lang="en", home="toy.home", data={"fruits": FRUITS, **data})
    conv, reply = engine.begin(ctx)
    return ctx, conv, reply


def test_long_lists_page_with_98_and_back_with_0(engine):
    ctx, conv, _ = start(engine)
    first = engine.handle(conv, ctx, "1").text
    assert first.startswith("Fruits:\n1. Fruit number 01") and first.endswith("98. More")
    pages = [first]
    while "98. More" in pages[-1].splitlines():
        pages.append(engine.handle(conv, ctx, "98").text)
    assert all(gsm7.fits(p) for p in pages)
    shown = "\n".join(pages)
    assert all(f"{i}. Fruit number {i:02d}" in shown for i in range(1, 13))
    assert engine.handle(conv, ctx, "98").text.startswith("Invalid choice.")  # no page after the last
    assert engine.handle(conv, ctx, "0").text == pages[-2]
    reply = engine.handle(conv, ctx, "12")  # numbers are global across pages
    assert reply.end and reply.text == "You picked f12"


def test_back_home_and_invalid_input(engine):
    ctx, conv, home = start(engine)
    assert engine.handle(conv, ctx, "7").text == "Invalid choice.\n" + home.text
    assert engine.handle(conv, ctx, "2").text == "Say a word"
    assert engine.handle(conv, ctx, "42").text == "Invalid choice.\nSay a word"
    assert engine.handle(conv, ctx, "0").text == home.text
    engine.handle(conv, ctx, "2")
    assert engine.handle(conv, ctx, "00").text == home.text
    assert ctx.data == {}  # home forgets the flow's data
    assert conv.history == []


def test_secret_input_is_passed_on_but_never_kept(engine):
    ctx, conv, _ = start(engine)
    engine.handle(conv, ctx, "3")
    assert engine.handle(conv, ctx, "1234").text == "No.\nSecret?"
    assert "1234" not in repr(ctx.data) and "1234" not in repr(conv.to_json())
    assert engine.snapshot(conv, ctx) is None  # never resumed at a secret screen
    assert engine.handle(conv, ctx, "0").text.startswith("Toy")  # the retry did not pile up history
    engine.handle(conv, ctx, "3")
    reply = engine.handle(conv, ctx, "4321")
    assert reply.end and conv.ended and reply.text == "In"


def test_resume_snapshot_leaves_out_session_only_keys(engine):
    ctx, conv, _ = start(engine, _held="hash", keep="yes")
    engine.handle(conv, ctx, "2")
    snapshot = engine.snapshot(conv, ctx)
    assert snapshot["state"] == "toy.word" and "keep" in snapshot["data"] and "_held" not in snapshot["data"]
    ctx2 = Context(phone="+254712000111", lang="en", home="toy.home")
    conv2, offer = engine.begin(ctx2, snapshot)
    assert conv2.state == RESUME and "1. Yes" in offer.text
    assert engine.handle(conv2, ctx2, "1").text == "Say a word"
    assert engine.handle(conv2, ctx2, "0").text.startswith("Toy")


_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), _JSONISH, max_size=6))
def test_the_mark_a_screen_keeps_is_a_deep_copy_of_the_data(data):
    """Where "0" comes back to: equal to the data, sharing nothing that could change with it
    (the same as copy.deepcopy, also for lists and dicts in the data)."""
    mark = _copied(data)
    assert mark == copy.deepcopy(data) and mark is not data
    for key, value in data.items():
        if isinstance(value, (list, dict)):
            assert mark[key] is not value
    data["added after"] = 1
    assert "added after" not in mark
