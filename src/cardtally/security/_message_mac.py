"""MACs over whole ISO 8583 messages: the one way every party signs and checks.

The wire profile defines *what* is MACed (everything before the MAC field, with
the MAC bit already in the bitmap); this module adds *how* (algorithm and key).
"""

from __future__ import annotations

from cardtally.security._mac import MacAlgorithm, compute_mac, verify_mac
from cardtally.wire import Message, encode_signed, split_mac


def sign_message(message: Message, algorithm: MacAlgorithm, mac_key: bytes) -> bytes:
    """Encode ``message`` with its MAC (field 64, or 128 with a secondary bitmap)."""
    return encode_signed(message, lambda block: compute_mac(algorithm, mac_key, block))


def message_mac_ok(
    raw_message: bytes, message: Message, algorithm: MacAlgorithm, mac_key: bytes
) -> bool:
    """True when the received bytes carry a MAC and it verifies; False for a missing one.

    ``raw_message`` must be the bytes as received: re-encoding could differ.
    """
    parts = split_mac(raw_message, message)
    return parts is not None and verify_mac(algorithm, mac_key, *parts)
