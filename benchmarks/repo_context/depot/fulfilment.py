"""Fulfilment: pick the stock, decide parcel or pallet, and record what shipped."""

from __future__ import annotations

from dataclasses import dataclass

from depot import units
from depot.catalog import Catalog
from depot.ledger import REFUNDS_ACCOUNT, Ledger
from depot.orders import Order, book_sale, missing_lines, product
from depot.rates import MIN_CHARGE_CENTS, needs_pallet, tariff_cents, zone_of


@dataclass
class Shipment:
    """What left the depot for one order."""

    reference: str
    picked: dict[str, int]
    grams: int
    pallet: bool


def pick(order: Order, catalog: Catalog) -> dict[str, int]:
    """Take the ordered units off the shelves; returns what was actually picked."""
    picked = {}
    for code, count in order.lines.items():
        picked[code] = catalog.take(code, count)
    return picked


def shipment_grams(picked: dict[str, int], catalog: Catalog) -> int:
    """Billable weight of what was picked."""
    grams = 0
    for code, count in picked.items():
        sku = product(catalog, code)
        grams += units.billable_grams(sku.unit_grams * count, sku.box_cm)
    return grams


def ship(order: Order, catalog: Catalog, ledger: Ledger) -> Shipment:
    """Pick, weigh and book an order; partial orders ship what there is."""
    if missing_lines(order, catalog) and not order.lines:
        raise ValueError("nothing to ship")
    picked = pick(order, catalog)
    grams = shipment_grams(picked, catalog)
    book_sale(order, catalog, ledger)
    return Shipment(order.reference, picked, grams, needs_pallet(grams))


def refund_shortfall(order: Order, shipment: Shipment, catalog: Catalog, ledger: Ledger) -> int:
    """Refund the units that were ordered but not picked; returns the refunded cents."""
    cents = 0
    for code, count in order.lines.items():
        short = count - shipment.picked.get(code, 0)
        cents += short * product(catalog, code).unit_cents
    if cents:
        ledger.book(-cents, REFUNDS_ACCOUNT, f"shortfall on {order.reference}")
    return cents


def label(shipment: Shipment, postcode: str) -> str:
    """The text printed on the parcel label."""
    zone = zone_of(postcode)
    weight = f"{shipment.grams / 1000:.1f} kg"
    kind = "PALLET" if shipment.pallet else "PARCEL"
    return f"{shipment.reference} {kind} zone {zone} {weight}"


def return_postage(grams: int, postcode: str) -> int:
    """What the depot pays to get a parcel back: the tariff, never below the minimum charge."""
    cents = tariff_cents(grams, zone_of(postcode))
    return max(cents, MIN_CHARGE_CENTS)


def pounds_label(pounds: float, postcode: str) -> str:
    """A label for a parcel weighed in pounds."""
    grams = units.grams_from_pounds(pounds)
    return f"{zone_of(postcode)}-{grams}"
