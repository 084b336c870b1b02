"""The Triple DES shim: it matters, and it computes the published answers."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import psec
import pytest
from cryptography.utils import CryptographyDeprecationWarning

from cardtally.security import _tdes

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_psec_called_directly_warns() -> None:
    with pytest.warns(CryptographyDeprecationWarning, match="TripleDES has been moved"):
        psec.des.encrypt_tdes_ecb(KEY + KEY[:8], bytes(8))


@pytest.mark.parametrize(
    "call",
    [
        lambda: _tdes.encrypt_ecb(KEY, bytes(8)),
        lambda: _tdes.decrypt_ecb(KEY, bytes(8)),
        lambda: _tdes.key_check_value(KEY),
        lambda: _tdes.retail_mac(KEY, b"data"),
        lambda: _tdes.ibm3624_offset(KEY, "0123456789012345", "1234", "123456789012"),
    ],
    ids=["encrypt", "decrypt", "kcv", "retail-mac", "ibm3624"],
)
def test_shim_emits_no_warning(call: Callable[[], object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call()


def test_shim_leaves_other_warnings_alone() -> None:
    with pytest.warns(UserWarning, match="unrelated"), _tdes._psec_tdes_calls():
        warnings.warn("unrelated", UserWarning, stacklevel=1)


def test_shim_leaves_no_filter_behind() -> None:
    before = list(warnings.filters)
    _tdes.encrypt_ecb(KEY, bytes(8))
    assert warnings.filters == before


# NIST SP 800-20 (TMOVS), Table A.1 "Variable Plaintext Known Answer Test",
# key 01..01 in all three positions (so TDES reduces to DES).
@pytest.mark.parametrize(
    ("plain", "cipher"),
    [
        ("8000000000000000", "95F8A5E5DD31D900"),
        ("4000000000000000", "DD7F121CA5015619"),
        ("2000000000000000", "2E8653104F3834EA"),
    ],
)
def test_sp800_20_variable_plaintext(plain: str, cipher: str) -> None:
    key = bytes.fromhex("0101010101010101" * 2)
    assert _tdes.encrypt_ecb(key, bytes.fromhex(plain)).hex().upper() == cipher
    assert _tdes.decrypt_ecb(key, bytes.fromhex(cipher)).hex().upper() == plain


def test_fips81_ecb_example() -> None:
    # FIPS PUB 81 (DES modes of operation), Appendix B, Table B1: ECB mode,
    # key 0123456789ABCDEF, plaintext "Now is the time for all ".
    key = bytes.fromhex("0123456789ABCDEF") * 2
    cipher = _tdes.encrypt_ecb(key, b"Now is the time for all ")
    assert cipher.hex().upper() == "3FA40E8A984D48156A271787AB8883F9893D51EC4B563B53"


def test_two_key_tdes_vector() -> None:
    # Two-key TDEA (K1=0123456789ABCDEF, K2=FEDCBA9876543210): Botan test suite
    # src/tests/data/block/des.vec, [TripleDES] first case; the same vector is
    # in OCaml Cryptokit's test suite.
    cipher = _tdes.encrypt_ecb(KEY, bytes.fromhex("0123456789ABCDE7"))
    assert cipher.hex().upper() == "7F1D0A77826B8AFF"


def test_kcv_is_encryption_of_zeros() -> None:
    # NIST SP 800-20, Table A.2 "Variable Key Known Answer Test": plaintext 0,
    # key 8001010101010101 gives 95A8D72813DAA94D. A KCV is exactly that
    # encryption of zeros, truncated.
    key = bytes.fromhex("8001010101010101" * 2)
    assert _tdes.key_check_value(key, 4).hex().upper() == "95A8D728"
    assert _tdes.key_check_value(key, 8).hex().upper() == "95A8D72813DAA94D"


@pytest.mark.parametrize("length", [0, 7, 9, 15, 17, 32])
def test_bad_key_lengths_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="8, 16 or 24 bytes"):
        _tdes.encrypt_ecb(bytes(length), bytes(8))
