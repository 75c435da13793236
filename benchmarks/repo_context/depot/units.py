"""Unit conversions: every weight in the depot is whole grams, every amount of money whole cents."""

from __future__ import annotations

GRAMS_PER_POUND = 453.59237
VOLUMETRIC_DIVISOR = 5000  # cubic centimetres per kilogram of billable weight
PARCEL_CEILING_GRAMS = 31_500  # heavier parcels travel as freight pallets


def grams_from_pounds(pounds: float) -> int:
    """Whole grams in ``pounds`` (rounded half up)."""
    return int(pounds * GRAMS_PER_POUND + 0.5)


def volumetric_grams(length_cm: int, width_cm: int, height_cm: int) -> int:
    """The weight a carrier bills for the space a box takes."""
    return length_cm * width_cm * height_cm * 1000 // VOLUMETRIC_DIVISOR


def billable_grams(actual_grams: int, box: tuple[int, int, int]) -> int:
    """The larger of the actual and the volumetric weight of ``box`` (length, width, height in cm)."""
    return max(actual_grams, volumetric_grams(*box))


def cents_to_text(cents: int, sign: str = "$") -> str:
    """``1234`` -> ``"$12.34"`` (negative amounts in parentheses)."""
    text = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
    return f"({text})" if cents < 0 else text


def split_evenly(cents: int, parts: int) -> list[int]:
    """``cents`` in ``parts`` amounts that differ by at most one cent (the first ones get the extra)."""
    base, extra = divmod(cents, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
