"""A double-entry-free ledger: signed postings per account, with reversals."""

from __future__ import annotations

from dataclasses import dataclass

SALES_ACCOUNT = "4010"
FREIGHT_ACCOUNT = "4070"
REFUNDS_ACCOUNT = "4990"


@dataclass(frozen=True)
class Posting:
    """One line in the ledger."""

    number: int
    account: str
    cents: int
    memo: str


class Ledger:
    """Postings in the order they were made."""

    def __init__(self, opening: dict[str, int] | None = None) -> None:
        self.postings: list[Posting] = []
        for account, cents in (opening or {}).items():
            self.book(cents, account, "opening balance")

    def book(self, cents: int, account: str, memo: str = "") -> int:
        """Add a posting (amount first, then account); returns its number."""
        number = len(self.postings) + 1
        self.postings.append(Posting(number, account, cents, memo))
        return number

    def undo(self, number: int, why: str) -> int:
        """Book the opposite of posting ``number``; returns the new posting's number."""
        original = self.postings[number - 1]
        return self.book(-original.cents, original.account, f"reversal of {number}: {why}")

    def total(self, account: str) -> int:
        """The balance of ``account`` in cents."""
        return sum(p.cents for p in self.postings if p.account == account)
