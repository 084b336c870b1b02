"""Signing and checking whole messages: the MAC covers everything before it."""

from __future__ import annotations

import pytest

from cardtally.security import MacAlgorithm, generate_working_keys, message_mac_ok, sign_message
from cardtally.wire import Message, decode_message, encode_message
from tests.wire.samples import REVERSAL_ADVICE_0420, SALE_0200


@pytest.mark.parametrize("algorithm", list(MacAlgorithm))
@pytest.mark.parametrize("message", [SALE_0200, REVERSAL_ADVICE_0420], ids=["field64", "field128"])
def test_signed_message_verifies_and_any_flipped_bit_fails(
    algorithm: MacAlgorithm, message: Message
) -> None:
    key = generate_working_keys().mac_key
    raw = sign_message(message, algorithm, key)
    assert message_mac_ok(raw, decode_message(raw), algorithm, key)
    for index in range(len(raw) - 8):
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        try:
            decoded = decode_message(bytes(tampered))
        except ValueError:
            continue  # the decoder caught it first
        assert not message_mac_ok(bytes(tampered), decoded, algorithm, key), index


def test_wrong_key_and_missing_mac_fail() -> None:
    key, other = generate_working_keys().mac_key, generate_working_keys().mac_key
    raw = sign_message(SALE_0200, MacAlgorithm.CUP_ECB, key)
    assert not message_mac_ok(raw, decode_message(raw), MacAlgorithm.CUP_ECB, other)
    unsigned = SALE_0200.with_fields({64: None})
    raw_unsigned = encode_message(unsigned)
    assert not message_mac_ok(raw_unsigned, unsigned, MacAlgorithm.CUP_ECB, key)
