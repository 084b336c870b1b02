"""The issuing bank: cards, authorisation, ledger postings and cardholder notices.

:class:`IssuerCore` is sans-I/O (a message and the time in; an answer, postings
and notices out, through :class:`IssuerStore`). :class:`IssuerService` runs it
under the runtime's group commit; ``_cards`` holds the operator's card commands.
"""

from cardtally.issuer._cards import (
    CardError,
    CardLimits,
    CardView,
    NewCard,
    add_card,
    all_cards,
    find_card,
    history,
    issuer_accounts,
    reveal_card_pan,
    set_status,
    view,
)
from cardtally.issuer._core import (
    FINANCIAL,
    IssuerCore,
    IssuerPolicy,
    Outcome,
)
from cardtally.issuer._database import ISSUER_TREE, ISSUER_TREES, open_issuer_database
from cardtally.issuer._model import Card, CardKind, CardStatus, StoredResponse, TxnKind, TxnRecord
from cardtally.issuer._posting import (
    OWED_SUFFIX,
    funding_account_id,
    owed_account_id,
    settlement_account_id,
)
from cardtally.issuer._request import LOCAL_TIME, LocalTime, classify, content_digest, request_key
from cardtally.issuer._service import IssuerService
from cardtally.issuer._store import IssuerStore, SqlIssuerStore

__all__ = [
    "FINANCIAL",
    "ISSUER_TREE",
    "ISSUER_TREES",
    "LOCAL_TIME",
    "OWED_SUFFIX",
    "Card",
    "CardError",
    "CardKind",
    "CardLimits",
    "CardStatus",
    "CardView",
    "IssuerCore",
    "IssuerPolicy",
    "IssuerService",
    "IssuerStore",
    "LocalTime",
    "NewCard",
    "Outcome",
    "SqlIssuerStore",
    "StoredResponse",
    "TxnKind",
    "TxnRecord",
    "add_card",
    "all_cards",
    "classify",
    "content_digest",
    "find_card",
    "funding_account_id",
    "history",
    "issuer_accounts",
    "open_issuer_database",
    "owed_account_id",
    "request_key",
    "reveal_card_pan",
    "set_status",
    "settlement_account_id",
    "view",
]
