"""A small inventory system: the context file for the typing-replay benchmark (written for this project)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


@dataclass
class Item:
    """One product line in the warehouse."""

    sku: str
    name: str
    price: float
    stock: int = 0
    tags: list[str] = field(default_factory=list)

    def value(self) -> float:
        """Money tied up in this item's stock."""
        return self.price * self.stock

    def is_available(self) -> bool:
        return self.stock > 0


@dataclass
class Order:
    """A customer's order: quantities per SKU."""

    number: int
    customer: str
    lines: dict[str, int]
    placed: date = field(default_factory=date.today)

    def total(self, catalogue: dict[str, Item]) -> float:
        """Price of the order with the catalogue's current prices."""
        return sum(catalogue[sku].price * qty for sku, qty in self.lines.items())


class Inventory:
    """Items by SKU, with stock movements and a history of what happened."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.history: list[tuple[str, str, int]] = []

    def add(self, item: Item) -> None:
        if item.sku in self.items:
            raise ValueError(f"duplicate SKU {item.sku}")
        self.items[item.sku] = item
        self.history.append(("add", item.sku, item.stock))

    def remove(self, sku: str) -> Item:
        item = self.items.pop(sku)
        self.history.append(("remove", sku, item.stock))
        return item

    def receive(self, sku: str, quantity: int) -> None:
        """Goods arrived: increase the stock."""
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.items[sku].stock += quantity
        self.history.append(("receive", sku, quantity))

    def ship(self, order: Order) -> list[str]:
        """Take an order's items out of stock; returns the SKUs that were short."""
        short = []
        for sku, qty in order.lines.items():
            item = self.items.get(sku)
            if item is None or item.stock < qty:
                short.append(sku)
                continue
            item.stock -= qty
            self.history.append(("ship", sku, qty))
        return short

    def total_value(self) -> float:
        return sum(item.value() for item in self.items.values())

    def by_tag(self, tag: str) -> list[Item]:
        return [item for item in self.items.values() if tag in item.tags]

    def cheapest(self, count: int = 3) -> list[Item]:
        return sorted(self.items.values(), key=lambda item: item.price)[:count]

    def search(self, text: str) -> list[Item]:
        """Items whose name contains ``text``, case-insensitively."""
        needle = text.lower()
        return [item for item in self.items.values() if needle in item.name.lower()]


def load_csv(path: Path) -> Inventory:
    """Read an inventory from a CSV file with columns sku, name, price, stock, tags."""
    inventory = Inventory()
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            tags = [t for t in row.get("tags", "").split(";") if t]
            inventory.add(Item(row["sku"], row["name"], float(row["price"]), int(row["stock"]), tags))
    return inventory


def save_json(inventory: Inventory, path: Path) -> None:
    data = [
        {"sku": i.sku, "name": i.name, "price": i.price, "stock": i.stock, "tags": i.tags}
        for i in inventory.items.values()
    ]
    path.write_text(json.dumps(data, indent=2))


def load_json(path: Path) -> Inventory:
    inventory = Inventory()
    for entry in json.loads(path.read_text()):
        inventory.add(Item(**entry))
    return inventory


def price_changes(old: Inventory, new: Inventory) -> dict[str, tuple[float, float]]:
    """SKUs whose price differs between two snapshots, with (old, new) prices."""
    changes = {}
    for sku, item in new.items.items():
        before = old.items.get(sku)
        if before is not None and before.price != item.price:
            changes[sku] = (before.price, item.price)
    return changes


def summary(inventory: Inventory) -> str:
    lines = [f"{len(inventory.items)} items, total value {inventory.total_value():.2f}"]
    for item in inventory.cheapest():
        lines.append(f"  {item.sku}: {item.name} at {item.price:.2f}")
    return "\n".join(lines)
