"""Messages the switch sends to an issuer: forwarded requests and reversal advices.

Towards the issuer the switch speaks for itself: its own trace number in 11, its
transmission time in 7, its acquiring institution in 32, its RRN in 37 (a void or refund
keeps the original's RRN, which is how the issuer finds the original), the merchant's name
in 43, and the PIN block re-encrypted from the terminal's PIN key to the zone PIN key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardtally.security import decrypt_pin_block, encrypt_pin_block
from cardtally.switch._model import Merchant, Txn, TxnKind, rrn_of
from cardtally.wire import Message, Pan, transmission_time

#: Terminal fields that are link security, not the request: never forwarded.
_NOT_FORWARDED: Final = frozenset({52, 64, 128})
_ADVICE_MTI: Final = "0420"
_REVERSAL_REASON_NO_ANSWER: Final = "98"
_STAN_MODULUS: Final = 999_999


@dataclass(frozen=True, slots=True)
class SwitchIdentity:
    acquirer_id: str  # field 32
    forwarding_id: str  # field 33
    currency: str


def issuer_stan(txn_id: int) -> str:
    """The switch's own trace number for a transaction: 000001..999999, cycling."""
    return f"{(txn_id - 1) % _STAN_MODULUS + 1:06d}"


def merchant_field43(merchant: Merchant) -> str:
    """Name (25) + city (13) + country (2): field 43's 40 characters."""
    return f"{merchant.name[:25]:<25}{merchant.city[:13]:<13}CN"


def translate_pin_block(block: bytes, pan: Pan, pin_key: bytes, zone_pin_key: bytes) -> bytes:
    """Terminal PIN key to zone PIN key; ``PinBlockError`` when it does not decrypt as one."""
    return encrypt_pin_block(zone_pin_key, decrypt_pin_block(pin_key, block, pan), pan)


def forward_message(
    request: Message,
    *,
    txn: Txn,
    merchant: Merchant,
    identity: SwitchIdentity,
    at_ms: int,
    pin_block: bytes | None,
) -> Message:
    """The request as the issuer gets it."""
    fields = {n: v for n, v in request.fields.items() if n not in _NOT_FORWARDED}
    fields.update(
        {
            7: transmission_time(at_ms),
            11: issuer_stan(txn.id),
            32: identity.acquirer_id,
            43: merchant_field43(merchant),
        }
    )
    if txn.kind not in (TxnKind.VOID, TxnKind.REFUND):
        fields[37] = rrn_of(txn.id)
    if 49 not in fields:
        fields[49] = identity.currency
    if pin_block is not None:
        fields[52] = pin_block.hex().upper()
    return Message(request.mti[:3] + "0", fields)


def advice_fields(original: Txn, identity: SwitchIdentity) -> dict[int, str]:
    """The 0420 that undoes ``original`` as forwarded, without its PAN (added when sent).

    Field 7 repeats the original's: the advice is keyed by the transaction it undoes, so every
    resend (0421) is the same request to the issuer and is answered, never applied, twice.
    """
    assert original.issuer_stan and original.transmitted and original.forwarded_mti
    fields = {
        3: original.processing_code,
        4: f"{original.amount_minor:012d}",
        7: original.transmitted,
        11: original.issuer_stan,
        32: identity.acquirer_id,
        33: identity.forwarding_id,
        37: original.forwarded_rrn or rrn_of(original.id),
        39: _REVERSAL_REASON_NO_ANSWER,
        41: original.echo_fields.get(41, original.terminal_id),
        42: original.echo_fields.get(42, original.merchant_id),
        49: original.currency,
        90: (
            f"{original.forwarded_mti}{original.issuer_stan}{original.transmitted}"
            f"{int(identity.acquirer_id):011d}{int(identity.forwarding_id):011d}"
        ),
    }
    return fields


def advice_message(fields: dict[int, str], pan: Pan | None, attempt: int) -> Message:
    """The advice as sent: 0420 the first time, 0421 after."""
    body = dict(fields)
    if pan is not None:
        body[2] = pan.reveal()
    return Message(_ADVICE_MTI if attempt == 0 else "0421", body)
