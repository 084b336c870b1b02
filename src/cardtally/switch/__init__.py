"""The acquirer switch: registry, sign-on, routing by BIN, timeouts and store-and-forward.

:class:`SwitchCore` is sans-I/O: the runtime (``runtime/switch_process.py``) and the simulator
feed it terminal requests, issuer messages and timer expiries with the time and a
:class:`SwitchStore`, and carry out the effects it returns.
"""

from cardtally.switch._core import SwitchCore, SwitchPolicy
from cardtally.switch._effects import (
    AdviceAcked,
    AdviceSend,
    Answer,
    Forward,
    Ignored,
    IssuerOutcome,
    Join,
    TerminalAnswer,
    TerminalOutcome,
)
from cardtally.switch._forward import SwitchIdentity
from cardtally.switch._model import (
    Advice,
    IssuerRoute,
    Merchant,
    SettlementCycle,
    Terminal,
    TerminalKeys,
    TerminalStatus,
    Txn,
    TxnKind,
    TxnState,
    rrn_of,
    txn_id_of,
)
from cardtally.switch._request import MANDATORY
from cardtally.switch._store import SqlSwitchStore, SwitchStore
from cardtally.wire import BatchTotals

__all__ = [
    "MANDATORY",
    "Advice",
    "AdviceAcked",
    "AdviceSend",
    "Answer",
    "BatchTotals",
    "Forward",
    "Ignored",
    "IssuerOutcome",
    "IssuerRoute",
    "Join",
    "Merchant",
    "SettlementCycle",
    "SqlSwitchStore",
    "SwitchCore",
    "SwitchIdentity",
    "SwitchPolicy",
    "SwitchStore",
    "Terminal",
    "TerminalAnswer",
    "TerminalKeys",
    "TerminalOutcome",
    "TerminalStatus",
    "Txn",
    "TxnKind",
    "TxnState",
    "rrn_of",
    "txn_id_of",
]
