"""The POS terminal. So far: its requests, built as the wire profile lays them out."""

from cardtally.terminal._requests import (
    Card,
    TerminalIdentity,
    balance_inquiry,
    echo_test,
    preauth,
    refund,
    reversal_of,
    sale,
    settlement,
    sign,
    sign_on,
    void,
)

__all__ = [
    "Card",
    "TerminalIdentity",
    "balance_inquiry",
    "echo_test",
    "preauth",
    "refund",
    "reversal_of",
    "sale",
    "settlement",
    "sign",
    "sign_on",
    "void",
]
