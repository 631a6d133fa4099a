"""Fees, in minor units, by amount band and kind of transfer.

Shaped like Kenya's: sending up to KES 100 is free (micropayments must stay free), then the
fee rises by band. Bands are (upper bound inclusive, fee), both in minor units.
"""

from .money import to_minor

SEND_BANDS: tuple[tuple[int, int], ...] = tuple(
    (to_minor(upper), to_minor(fee))
    for upper, fee in (
        (100, 0),
        (500, 7),
        (1_000, 13),
        (1_500, 23),
        (2_500, 33),
        (3_500, 53),
        (5_000, 57),
        (7_500, 78),
        (10_000, 90),
        (15_000, 100),
        (20_000, 105),
        (10_000_000, 108),
    )
)

FREE_KINDS = frozenset({"float_issue", "deposit"})


def quote(kind: str, amount: int) -> int:
    """The fee for moving ``amount`` minor units as ``kind``."""
    if kind in FREE_KINDS:
        return 0
    if kind == "send":
        for upper, fee in SEND_BANDS:
            if amount <= upper:
                return fee
        return SEND_BANDS[-1][1]
    raise ValueError(f"no tariff for {kind!r}")
