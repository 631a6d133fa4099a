"""The GSM 03.38 7-bit alphabet: what a USSD screen can show, and how long a text is in it.

A USSD screen holds 160 septets. Basic characters take one; the extension table's characters
(``^{}\\[~]|€`` and form feed) take two, because each is sent as an escape plus a character.
Anything outside both tables does not fit the alphabet at all (the gateway would switch the
whole screen to UCS-2 and halve its length), so such a text never "fits".
"""

import functools
import re

SCREEN_LIMIT = 160

BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = frozenset("^{}\\[~]|€\f")
# Every screen is measured, several times while its pages are laid out: a text of basic
# characters only (nearly all of them) is measured by one regular-expression search in C.
_NOT_BASIC = re.compile("[^" + re.escape("".join(sorted(BASIC))) + "]")
_NOT_GSM = re.compile("[^" + re.escape("".join(sorted(BASIC | EXTENSION))) + "]")


# Remembered for the texts seen last: a hop measures its screen twice (laying it out, then the
# last guard, ``render.fit``) and most screens are the same text for everyone (the menus).
@functools.lru_cache(maxsize=1024)
def length(text: str) -> int | None:
    """Septets ``text`` takes in GSM 7-bit, or None when it has a character outside it."""
    if _NOT_BASIC.search(text) is None:
        return len(text)
    total = 0
    for ch in text:
        if ch in BASIC:
            total += 1
        elif ch in EXTENSION:
            total += 2
        else:
            return None
    return total


def fits(text: str, limit: int = SCREEN_LIMIT) -> bool:
    n = length(text)
    return n is not None and n <= limit


def clean(text: str) -> str:
    """``text`` with every character outside the alphabet replaced by ``?`` (for names and
    other text that came from elsewhere and is shown on a screen)."""
    if _NOT_GSM.search(text) is None:
        return text
    return "".join(ch if ch in BASIC or ch in EXTENSION else "?" for ch in text)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` septets, ending in ``..`` when cut."""
    text = clean(text)
    if fits(text, limit):
        return text
    out, used = [], 0
    for ch in text:
        size = 2 if ch in EXTENSION else 1
        if used + size > limit - 2:
            break
        out.append(ch)
        used += size
    return "".join(out).rstrip() + ".."
