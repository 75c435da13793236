"""Freight rates: zones by postcode, a tariff per zone and weight band, and surcharges."""

from __future__ import annotations

from depot.units import PARCEL_CEILING_GRAMS

ZONE_PERCENT = {"K": 100, "M": 145, "R": 210}  # zone K is the home zone
FUEL_SURCHARGE_BP = 725  # basis points on top of the tariff
MIN_CHARGE_CENTS = 499
BAND_GRAMS = 2_500  # the tariff rises per started band
BAND_CENTS = 180
REMOTE_PREFIXES = ("IV", "HS", "ZE", "KW")


def zone_of(postcode: str) -> str:
    """The zone letter for a postcode: ``R`` for remote prefixes, ``M`` for other letters, ``K`` for digits."""
    head = postcode.strip().upper()[:2]
    if head in REMOTE_PREFIXES:
        return "R"
    return "K" if head[:1].isdigit() else "M"


def tariff_cents(billable: int, zone: str, express: bool = False) -> int:
    """The tariff for ``billable`` grams into ``zone``; express doubles it."""
    bands = -(-billable // BAND_GRAMS)
    cents = max(MIN_CHARGE_CENTS, bands * BAND_CENTS * ZONE_PERCENT[zone] // 100)
    return cents * 2 if express else cents


def with_fuel(cents: int, basis_points: int = FUEL_SURCHARGE_BP) -> int:
    """``cents`` plus the fuel surcharge, rounded up to the cent."""
    return cents + -(-cents * basis_points // 10_000)


def needs_pallet(billable: int) -> bool:
    """Whether a consignment is too heavy to travel as a parcel."""
    return billable > PARCEL_CEILING_GRAMS
