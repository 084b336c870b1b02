"""cardtally's own TDES operations and MACs against psec, kept as the reference.

``_tdes`` computes MACs and ECB blocks with as few cipher operations as it can
(one single-DES CBC pass and one TDES block for X9.19, one CBC pass for the CUP
MAC). psec computes them the textbook way, so agreeing with psec for random keys
and every data length up to 300 bytes shows the shortcuts change no result.
"""

from __future__ import annotations

import psec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cardtally.security import MacAlgorithm, _tdes, compute_mac, verify_mac

from .strategies import double_keys

algorithms = st.sampled_from(list(MacAlgorithm))
message_data = st.binary(max_size=300)
# Lengths around block edges are where padding and the last-block split can go wrong.
edge_lengths = st.sampled_from([0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 299, 300]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)
some_data = st.one_of(message_data, edge_lengths)
any_des_keys = st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
blocks = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.binary(min_size=8 * n, max_size=8 * n)
)


def psec_x9_19(key: bytes, data: bytes) -> bytes:
    # psec's retail MAC with single-length keys, each given in its 24-byte form.
    with _tdes._psec_tdes_calls():
        mac: bytes = psec.mac.generate_retail_mac(key[:8] * 3, key[8:] * 3, data, padding=1)
    return mac


def psec_cup_ecb(key: bytes, data: bytes) -> bytes:
    """The CUP "ECB" MAC step by step, every encryption a separate psec call."""
    padded = psec.mac.pad_iso_1(data)  # empty data: one zero block, which folds to zero
    folded = bytes(8)
    for start in range(0, len(padded), 8):
        folded = psec.tools.xor(folded, padded[start : start + 8])
    expanded = folded.hex().upper().encode("ascii")
    with _tdes._psec_tdes_calls():
        first = psec.des.encrypt_tdes_ecb(key + key[:8], expanded[:8])
        second = psec.des.encrypt_tdes_ecb(key + key[:8], psec.tools.xor(first, expanded[8:]))
    mac: bytes = second.hex().upper().encode("ascii")[:8]
    return mac


def psec_reference(algorithm: MacAlgorithm, key: bytes, data: bytes) -> bytes:
    if algorithm is MacAlgorithm.X9_19:
        return psec_x9_19(key, data)
    return psec_cup_ecb(key, data)


@settings(max_examples=500, deadline=None)
@given(double_keys, some_data)
@example(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), b"Now is the time for all ")
def test_x9_19_equals_psec(key: bytes, data: bytes) -> None:
    assert compute_mac(MacAlgorithm.X9_19, key, data) == psec_x9_19(key, data)


@settings(max_examples=500, deadline=None)
@given(double_keys, some_data)
def test_cup_ecb_equals_psec(key: bytes, data: bytes) -> None:
    assert compute_mac(MacAlgorithm.CUP_ECB, key, data) == psec_cup_ecb(key, data)


@settings(max_examples=300, deadline=None)
@given(algorithms, double_keys, some_data)
def test_verify_accepts_the_reference_mac(algorithm: MacAlgorithm, key: bytes, data: bytes) -> None:
    assert verify_mac(algorithm, key, data, psec_reference(algorithm, key, data))


@settings(max_examples=500, deadline=None)
@given(algorithms, double_keys, some_data, st.data())
def test_verify_rejects_a_flipped_bit(
    algorithm: MacAlgorithm, key: bytes, data: bytes, choice: st.DataObject
) -> None:
    mac = compute_mac(algorithm, key, data)
    # One bit anywhere in the data or the MAC; the MAC is always 8 bytes, so there is one.
    bit = choice.draw(st.integers(min_value=0, max_value=8 * (len(data) + len(mac)) - 1))
    signed = bytearray(data + mac)
    signed[bit // 8] ^= 0x80 >> (bit % 8)
    tampered_data, tampered_mac = bytes(signed[: len(data)]), bytes(signed[len(data) :])
    assert not verify_mac(algorithm, key, tampered_data, tampered_mac)


@settings(max_examples=300, deadline=None)
@given(any_des_keys, blocks)
def test_ecb_equals_psec(key: bytes, data: bytes) -> None:
    three_key = _tdes.three_key_form(key)
    with _tdes._psec_tdes_calls():
        encrypted = psec.des.encrypt_tdes_ecb(three_key, data)
        decrypted = psec.des.decrypt_tdes_ecb(three_key, data)
    assert _tdes.encrypt_ecb(key, data) == encrypted
    assert _tdes.decrypt_ecb(key, data) == decrypted


@settings(max_examples=200, deadline=None)
@given(any_des_keys, st.integers(min_value=0, max_value=8))
def test_key_check_value_equals_psec(key: bytes, length: int) -> None:
    with _tdes._psec_tdes_calls():
        expected = psec.des.generate_kcv(_tdes.three_key_form(key), length)
    assert _tdes.key_check_value(key, length) == expected


@settings(max_examples=200, deadline=None)
@given(any_des_keys, blocks)
def test_cbc_last_block_is_psecs_last_cbc_block(key: bytes, data: bytes) -> None:
    with _tdes._psec_tdes_calls():
        expected = psec.des.encrypt_tdes_cbc(_tdes.three_key_form(key), bytes(8), data)[-8:]
    assert _tdes.cbc_last_block(key, data) == expected


@pytest.mark.parametrize("length", [0, 1, 7, 9, 15])
def test_block_operations_refuse_partial_blocks_as_psec_does(length: int) -> None:
    key = bytes(range(16))
    with _tdes._psec_tdes_calls(), pytest.raises(ValueError) as psec_error:
        psec.des.encrypt_tdes_ecb(_tdes.three_key_form(key), bytes(length))
    for operation in (_tdes.encrypt_ecb, _tdes.decrypt_ecb, _tdes.cbc_last_block):
        with pytest.raises(ValueError) as ours:
            operation(key, bytes(length))
        assert str(ours.value) == str(psec_error.value)


@pytest.mark.parametrize("length", [0, 8, 15, 17, 24])
def test_retail_mac_refuses_a_key_that_is_not_double_length(length: int) -> None:
    with pytest.raises(ValueError, match="retail MAC key must be 16 bytes"):
        _tdes.retail_mac(bytes(length), b"data")


def test_cached_ciphers_do_not_mix_up_keys() -> None:
    # The same data under alternating keys: a cache keyed wrongly would repeat a MAC.
    first, second = bytes(range(16)), bytes(range(16, 32))
    data = b"0200 sale, seven blocks of message data to be MACed."
    macs = [compute_mac(MacAlgorithm.X9_19, key, data) for key in (first, second, first)]
    assert macs[0] == macs[2] == psec_x9_19(first, data)
    assert macs[1] == psec_x9_19(second, data) != macs[0]
