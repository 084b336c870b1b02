"""MACs: published X9.19 answers, the CUP ECB MAC against a reference, tampering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardtally.security import MacAlgorithm, SecurityError, compute_mac, verify_mac

from . import reference
from .strategies import double_keys

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
algorithms = st.sampled_from(list(MacAlgorithm))


# ISO/IEC 9797-1:1999 (and :2011) Annex B, MAC algorithm 3 with padding method 1,
# K = 0123456789ABCDEF, K' = FEDCBA9876543210; the first string is also the
# ANSI X9.19 example.
@pytest.mark.parametrize(
    ("data", "mac"),
    [
        (b"Now is the time for all ", "A1C72E74EA3FA9B6"),
        (b"Now is the time for it", "2E2B1428CC78254F"),
    ],
)
def test_x9_19_published_vectors(data: bytes, mac: str) -> None:
    assert compute_mac(MacAlgorithm.X9_19, KEY, data).hex().upper() == mac
    assert verify_mac(MacAlgorithm.X9_19, KEY, data, bytes.fromhex(mac))


def test_algorithm_names_are_stable() -> None:
    # These strings go into configuration files; renaming one breaks deployments.
    assert MacAlgorithm("cup-ecb") is MacAlgorithm.CUP_ECB
    assert MacAlgorithm("x9.19") is MacAlgorithm.X9_19


@given(double_keys, st.binary(max_size=300))
def test_cup_ecb_matches_reference(key: bytes, data: bytes) -> None:
    assert compute_mac(MacAlgorithm.CUP_ECB, key, data) == reference.cup_ecb_mac(key, data)


def test_cup_ecb_fixed_vector() -> None:
    # Not a published vector (none we could verify): pinned from the
    # independent reference in reference.py so a regression in either shows.
    data = bytes.fromhex("0200702406C020C09A1116622588000000000000000000000123")
    assert reference.cup_ecb_mac(KEY, data) == b"1B22F8B3"
    assert compute_mac(MacAlgorithm.CUP_ECB, KEY, data) == b"1B22F8B3"


def test_cup_ecb_mac_is_upper_hex_ascii() -> None:
    mac = compute_mac(MacAlgorithm.CUP_ECB, KEY, b"any message")
    assert len(mac) == 8
    assert all(chr(c) in "0123456789ABCDEF" for c in mac)


@given(algorithms, double_keys, st.binary(max_size=200))
def test_verify_accepts_own_mac(algorithm: MacAlgorithm, key: bytes, data: bytes) -> None:
    assert verify_mac(algorithm, key, data, compute_mac(algorithm, key, data))


@given(algorithms, double_keys, st.binary(min_size=1, max_size=200), st.data())
def test_flipped_bit_in_data_fails(
    algorithm: MacAlgorithm, key: bytes, data: bytes, choice: st.DataObject
) -> None:
    mac = compute_mac(algorithm, key, data)
    bit = choice.draw(st.integers(min_value=0, max_value=8 * len(data) - 1))
    tampered = bytearray(data)
    tampered[bit // 8] ^= 1 << (bit % 8)
    # The CUP MAC folds blocks with XOR, so only a change that survives the fold
    # can be detected; a single flipped bit always does.
    assert not verify_mac(algorithm, key, bytes(tampered), mac)


@given(algorithms, double_keys, st.binary(max_size=200), st.integers(0, 63))
def test_flipped_bit_in_mac_fails(
    algorithm: MacAlgorithm, key: bytes, data: bytes, bit: int
) -> None:
    mac = bytearray(compute_mac(algorithm, key, data))
    mac[bit // 8] ^= 1 << (bit % 8)
    assert not verify_mac(algorithm, key, data, bytes(mac))


@pytest.mark.parametrize("algorithm", list(MacAlgorithm))
def test_wrong_length_mac_fails(algorithm: MacAlgorithm) -> None:
    mac = compute_mac(algorithm, KEY, b"message")
    assert not verify_mac(algorithm, KEY, b"message", mac[:4])
    assert not verify_mac(algorithm, KEY, b"message", mac + b"\x00")


@pytest.mark.parametrize("algorithm", list(MacAlgorithm))
def test_mac_key_must_be_double_length(algorithm: MacAlgorithm) -> None:
    with pytest.raises(SecurityError, match="MAC key must be 16 bytes"):
        compute_mac(algorithm, bytes(8), b"message")
