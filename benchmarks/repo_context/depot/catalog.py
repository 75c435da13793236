"""The catalogue: stock-keeping units with their price, weight and box."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sku:
    """One product as the depot stocks it."""

    code: str
    unit_cents: int
    unit_grams: int
    box_cm: tuple[int, int, int] = (30, 20, 10)
    reorder_below: int = 4


@dataclass
class Catalog:
    """Products by code, and how many of each are on the shelves."""

    skus: dict[str, Sku] = field(default_factory=dict)
    on_hand: dict[str, int] = field(default_factory=dict)

    def register(self, sku: Sku, count: int = 0) -> None:
        """Add a product (replacing one with the same code) with ``count`` units on the shelves."""
        self.skus[sku.code] = sku
        self.on_hand[sku.code] = count

    def find(self, code: str) -> Sku | None:
        """The product with this code, or None."""
        return self.skus.get(code.upper())

    def take(self, code: str, count: int) -> int:
        """Remove up to ``count`` units from the shelves; returns how many were there to take."""
        taken = min(count, self.on_hand.get(code, 0))
        self.on_hand[code] = self.on_hand.get(code, 0) - taken
        return taken

    def short_list(self) -> list[str]:
        """Codes whose stock is below their reorder level, sorted."""
        return sorted(c for c, sku in self.skus.items() if self.on_hand.get(c, 0) < sku.reorder_below)
