"""A double-entry ledger with two-phase transfers, in the manner of TigerBeetle.

The rules are plain Python over a small storage port, so the very same logic runs
over SQL at runtime and over memory in the simulator::

    ledger = Ledger(SqlLedgerStore(conn))          # or Ledger(MemoryLedgerStore())
    ledger.open_account(AccountSpec("card:1", "156", floor_minor=0), now_ms)
    ledger.open_account(AccountSpec("funding", "156", floor_minor=None), now_ms)
    ledger.open_account(AccountSpec("merchants", "156", floor_minor=None), now_ms)
    ledger.transfer(TransferSpec("load:1", "funding", "card:1", 10_000, "156"), now_ms)
    hold = TransferSpec("auth:1", "card:1", "merchants", 2_500, "156",
                        kind=TransferKind.PENDING, expires_at_ms=now_ms + 7 * 86_400_000)
    ledger.transfer(hold, now_ms)                   # available drops by 25.00
    ledger.transfer(TransferSpec("cap:1", "card:1", "merchants", 2_000, "156",
                                 kind=TransferKind.POST, pending_id="auth:1"), now_ms)

A refused request raises :class:`LedgerError` and changes nothing; a repeated
transfer id with the same content returns the first result (``created=False``).
:func:`verify` audits a whole store.
"""

from cardtally.ledger._errors import LedgerError, LedgerErrorCode
from cardtally.ledger._ledger import (
    EXPIRE_LIMIT_DEFAULT,
    EXPIRE_LIMIT_MAX,
    EXPIRED_REFERENCE,
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    Ledger,
)
from cardtally.ledger._memory import MemoryLedgerStore
from cardtally.ledger._model import (
    Account,
    AccountSpec,
    Posted,
    Transfer,
    TransferKind,
    TransferSpec,
)
from cardtally.ledger._rules import (
    AMOUNT_MINOR_MAX,
    EXPIRY_ID_PREFIX,
    ID_CHARS_MAX,
    LABEL_CHARS_MAX,
    REFERENCE_CHARS_MAX,
)
from cardtally.ledger._schema import (
    LEDGER_TREE,
    ledger_account_table,
    ledger_metadata,
    ledger_transfer_table,
)
from cardtally.ledger._sql import SqlLedgerStore
from cardtally.ledger._store import LedgerStore
from cardtally.ledger._verify import (
    CurrencyTotals,
    TransferAudit,
    VerifyReport,
    Violation,
    verify,
    verify_report,
)

__all__ = [
    "AMOUNT_MINOR_MAX",
    "EXPIRED_REFERENCE",
    "EXPIRE_LIMIT_DEFAULT",
    "EXPIRE_LIMIT_MAX",
    "EXPIRY_ID_PREFIX",
    "HISTORY_LIMIT_DEFAULT",
    "HISTORY_LIMIT_MAX",
    "ID_CHARS_MAX",
    "LABEL_CHARS_MAX",
    "LEDGER_TREE",
    "REFERENCE_CHARS_MAX",
    "Account",
    "AccountSpec",
    "CurrencyTotals",
    "Ledger",
    "LedgerError",
    "LedgerErrorCode",
    "LedgerStore",
    "MemoryLedgerStore",
    "Posted",
    "SqlLedgerStore",
    "Transfer",
    "TransferAudit",
    "TransferKind",
    "TransferSpec",
    "VerifyReport",
    "Violation",
    "ledger_account_table",
    "ledger_metadata",
    "ledger_transfer_table",
    "verify",
    "verify_report",
]
