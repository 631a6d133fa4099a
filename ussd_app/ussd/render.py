"""Showing a screen: its message in the person's language with the conversation's data filled
in (in the count's number), its numbered lines split into pages that each fit one screen
(``98. More`` on all but the last, ``0. Back`` on all but the first), a short reason after
wrong input, and the last guard of the 160-character rule. The engine (``engine.py``) decides
which screen and page to show; this module only turns them into text. It knows nothing about
money, people or databases."""

import functools
import logging

from ..i18n import t
from . import gsm7

log = logging.getLogger(__name__)

# Message ids whose wording depends on a count in the data: many -> (data key, the id for one).
_SINGULAR: dict[str, tuple[str, str]] = {}


def singular(many: str, key: str, one: str) -> None:
    """Show ``one`` instead of ``many`` when ``data[key] == 1`` ("1 try left", not "1 tries")."""
    _SINGULAR[many] = (key, one)


def say(lang: str, message: str, data: dict) -> str:
    """``message`` in ``lang`` with the conversation's data filled in, in the count's number."""
    if message in _SINGULAR:
        key, one = _SINGULAR[message]
        if data.get(key) == 1:
            message = one
    return t(lang, message, **data)


Pages = tuple[tuple[tuple[str, ...], bool], ...]  # (lines, more after) of each page


def pages(lang: str, numbered, head: str) -> Pages:
    """Split the menu lines ``numbered`` ((number, label, ...) each) into pages that fit one
    screen each: (lines, more after). The split never depends on a reason being shown, so "98"
    always follows on."""
    lines = tuple(f"{n}. {label}" for n, label, _to, _v in numbered)
    return _split(head, lines, t(lang, "98. More"), t(lang, "0. Back"))


@functools.lru_cache(maxsize=2048)
def _split(head: str, lines: tuple[str, ...], more: str, back: str) -> Pages:
    """``pages``' work, remembered: a menu is laid out the same way every time it is shown
    (to everyone who reads its language), and laying it out measures every trial page."""
    split: list[tuple[tuple[str, ...], bool]] = []
    start = 0
    while True:
        first = not split
        budget_head = head if first else ""
        taken: list[str] = []
        for i in range(start, len(lines)):
            trial = taken + [lines[i]]
            rest = i + 1 < len(lines)
            footer = ([more] if rest else []) + ([] if first else [back])
            if gsm7.fits("\n".join(filter(None, [budget_head, *trial, *footer]))) or not taken:
                taken = trial
            else:
                break
        start += len(taken)
        split.append((tuple(taken), start < len(lines)))
        if start >= len(lines):
            return tuple(split)


def screen_text(lang: str, head: str, reason: str | None, numbered, page: int) -> tuple[str, int]:
    """The text of a screen showing ``head`` (its message, filled in) after ``reason`` (why
    the last input was refused, filled in, or None), with page ``page`` of its ``numbered``
    lines; and the page shown (``page``, or the last one when fewer are left)."""
    if not numbered:
        return "\n".join(filter(None, [reason, head])), page
    split = pages(lang, numbered, head)
    page = min(page, len(split) - 1)
    lines, more = split[page]
    footer = ([t(lang, "98. More")] if more else []) + ([t(lang, "0. Back")] if page else [])
    # Page one carries the heading; a reason goes first, and when heading, reason and lines
    # do not all fit, the reason stands in for the heading.
    tops = [[reason, head], [reason], [head]] if page == 0 else [[reason], []]
    for top in tops:
        text = "\n".join(filter(None, [*top, *lines, *footer]))
        if gsm7.fits(text):
            break
    return text, page


def fit(text: str) -> str:
    """The last guard of the 160-character rule: a screen that would not fit is cut (the
    screen-walking test makes sure no designed screen ever needs this)."""
    septets = gsm7.length(text)  # (one scan: a text of the alphabet needs no cleaning)
    if septets is None:  # a character outside the alphabet: "?" in its place
        text = gsm7.clean(text)
        septets = gsm7.length(text)
    if septets <= gsm7.SCREEN_LIMIT:
        return text
    log.error("screen over %d GSM-7 characters was cut", gsm7.SCREEN_LIMIT)
    return gsm7.shorten(text, gsm7.SCREEN_LIMIT)
