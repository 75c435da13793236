"""A toy parcel depot: catalogue, freight rates, a ledger, and the order flow that ties them together."""

from .catalog import Catalog, Sku
from .ledger import Ledger

__all__ = ["Catalog", "Ledger", "Sku"]
