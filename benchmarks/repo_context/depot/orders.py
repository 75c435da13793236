"""Orders: price the lines, quote the freight, and book the sale."""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Catalog, Sku
from .ledger import FREIGHT_ACCOUNT, SALES_ACCOUNT, Ledger
from .rates import tariff_cents, with_fuel, zone_of
from .units import billable_grams, cents_to_text


class OrderError(ValueError):
    """An order that cannot be priced or filled."""


@dataclass
class Order:
    """What a customer asked for: quantities by product code."""

    reference: str
    postcode: str
    lines: dict[str, int] = field(default_factory=dict)
    express: bool = False


def product(catalog: Catalog, code: str) -> Sku:
    """The product for ``code``; an unknown code is an order error."""
    sku = catalog.find(code)
    if sku is None:
        raise OrderError(f"unknown product {code}")
    return sku


def goods_cents(order: Order, catalog: Catalog) -> int:
    """The price of the goods, without freight."""
    total = 0
    for code, count in order.lines.items():
        sku = product(catalog, code)
        total += sku.unit_cents * count
    return total


def order_grams(order: Order, catalog: Catalog) -> int:
    """The billable weight of the whole order (each line packed in its own boxes)."""
    grams = 0
    for code, count in order.lines.items():
        sku = product(catalog, code)
        grams += billable_grams(sku.unit_grams * count, sku.box_cm)
    return grams


def freight_cents(order: Order, catalog: Catalog) -> int:
    """Freight for the order: the zone's tariff for its weight, plus fuel."""
    zone = zone_of(order.postcode)
    base = tariff_cents(order_grams(order, catalog), zone, order.express)
    return with_fuel(base)


def quote(order: Order, catalog: Catalog) -> str:
    """A one-line quote for the customer."""
    goods = goods_cents(order, catalog)
    freight = freight_cents(order, catalog)
    return f"{order.reference}: goods {cents_to_text(goods)}, freight {cents_to_text(freight)}"


def book_sale(order: Order, catalog: Catalog, ledger: Ledger) -> tuple[int, int]:
    """Book the goods and the freight; returns the two posting numbers."""
    goods = goods_cents(order, catalog)
    freight = freight_cents(order, catalog)
    sale = ledger.book(goods, SALES_ACCOUNT, order.reference)
    carriage = ledger.book(freight, FREIGHT_ACCOUNT, order.reference)
    return sale, carriage


def cancel_sale(ledger: Ledger, postings: tuple[int, int], reason: str) -> None:
    """Reverse both postings of a sale."""
    for number in postings:
        ledger.undo(number, reason)


def missing_lines(order: Order, catalog: Catalog) -> list[str]:
    """Codes the shelves cannot fill completely."""
    missing = []
    for code, count in order.lines.items():
        if catalog.on_hand.get(code, 0) < count:
            missing.append(code)
    return missing
