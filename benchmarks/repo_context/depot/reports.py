"""Reports for the end of the day: takings, refunds, stock to reorder."""

from __future__ import annotations

import depot.units as money
from depot.catalog import Catalog

from . import ledger
from .ledger import REFUNDS_ACCOUNT


def takings_line(book: ledger.Ledger) -> str:
    """Sales and freight taken today."""
    sales = book.total(ledger.SALES_ACCOUNT)
    freight = book.total(ledger.FREIGHT_ACCOUNT)
    return f"sales {money.cents_to_text(sales)} / freight {money.cents_to_text(freight)}"


def refunds_line(book: ledger.Ledger) -> str:
    """Refunds paid today (a negative balance)."""
    refunds = book.total(REFUNDS_ACCOUNT)
    return f"refunds {money.cents_to_text(refunds)}"


def reorder_lines(catalog: Catalog) -> list[str]:
    """One line per product to reorder."""
    lines = []
    for code in catalog.short_list():
        sku = catalog.find(code)
        have = catalog.on_hand.get(code, 0)
        lines.append(f"{code}: {have} left, reorder below {sku.reorder_below if sku else '?'}")
    return lines


def share_of_takings(book: ledger.Ledger, partners: int) -> list[int]:
    """Today's sales split between ``partners``."""
    sales = book.total(ledger.SALES_ACCOUNT)
    return money.split_evenly(sales, partners)


def reversal_count(book: ledger.Ledger) -> int:
    """How many postings today were reversals."""
    return sum(1 for p in book.postings if p.memo.startswith("reversal of"))


def daily_report(book: ledger.Ledger, catalog: Catalog) -> str:
    """The whole report, one section per line."""
    parts = [takings_line(book), refunds_line(book)]
    parts.extend(reorder_lines(catalog))
    return "\n".join(parts)
