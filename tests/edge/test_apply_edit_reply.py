"""A client's ``workspace/applyEdit`` reply (issue 15 defect 5): only a well-formed ``{applied: true}`` counts."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types as lsp

from lsp_server.commands import apply_edit_refusal


@pytest.mark.parametrize("reply", [{"applied": True}, lsp.ApplyWorkspaceEditResult(applied=True)])
def test_a_well_formed_true_counts_as_applied(reply: Any) -> None:
    assert apply_edit_refusal(reply) is None


@pytest.mark.parametrize("reply", [None, 5, "yes", [], {}, {"applied": "true"}, {"applied": 1},
                                   {"applied": None}, {"applied": [True]}, {"ok": True}])
def test_a_malformed_reply_is_not_applied_and_says_so(reply: Any) -> None:
    reason = apply_edit_refusal(reply)
    assert reason is not None and "malformed" in reason and "not applied" in reason


def test_a_refusal_carries_the_clients_reason() -> None:
    assert apply_edit_refusal({"applied": False, "failureReason": "file is read-only"}) == "file is read-only"
    assert apply_edit_refusal(lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="busy")) == "busy"
    assert apply_edit_refusal({"applied": False}) == "no reason given"
    assert apply_edit_refusal({"applied": False, "failureReason": 7}) == "no reason given"
