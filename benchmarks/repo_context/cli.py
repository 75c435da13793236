"""Command line for the depot: quote, ship and report on a day's orders from a CSV file."""

from __future__ import annotations

import csv
import sys

from depot import Catalog, Ledger, Sku
from depot.fulfilment import label, refund_shortfall, ship
from depot.orders import Order, quote
from depot.reports import daily_report


def demo_catalog() -> Catalog:
    """A few products to try the commands with."""
    catalog = Catalog()
    catalog.register(Sku("KETTLE", 2499, 1200, (25, 20, 20)), 12)
    catalog.register(Sku("TOASTER", 3450, 2100, (35, 25, 25)), 3)
    catalog.register(Sku("MUG", 450, 350, reorder_below=20), 40)
    return catalog


def read_orders(path: str) -> list[Order]:
    """Orders from a CSV file with columns reference, postcode, code, count."""
    orders: dict[str, Order] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            order = orders.setdefault(row["reference"], Order(row["reference"], row["postcode"]))
            order.lines[row["code"]] = int(row["count"])
    return list(orders.values())


def main(argv: list[str]) -> int:
    """``quote FILE`` or ``ship FILE``."""
    command, path = argv[0], argv[1]
    catalog = demo_catalog()
    book = Ledger()
    for order in read_orders(path):
        if command == "quote":
            print(quote(order, catalog))
            continue
        shipment = ship(order, catalog, book)
        refund_shortfall(order, shipment, catalog, book)
        print(label(shipment, order.postcode))
    print(daily_report(book, catalog))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
