"""Keys, MACs, PIN blocks, PIN verification and card-number protection.

Everything Triple DES goes through one module (``_tdes``), which is also where
psec's deprecation warning from ``cryptography`` is handled, deliberately.

>>> from cardtally.security import MacAlgorithm, compute_mac, verify_mac
>>> key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> compute_mac(MacAlgorithm.X9_19, key, b"Now is the time for all ").hex().upper()
'A1C72E74EA3FA9B6'
>>> verify_mac(MacAlgorithm.X9_19, key, b"Now is the time for all!", bytes(8))
False
"""

from cardtally.security._data_keys import (
    DATA_KEYS_ENV,
    DataKeys,
    create_data_keys,
    data_keys_path,
    load_data_keys,
)
from cardtally.security._errors import KeyCheckError, KeyFileError, PinBlockError, SecurityError
from cardtally.security._issuer_keys import (
    ISSUER_KEYS_ENV,
    IssuerKeys,
    create_issuer_keys,
    issuer_keys_path,
    load_issuer_keys,
)
from cardtally.security._keys import (
    KCV_BYTES,
    SIGNON_KEYS_BYTES,
    WorkingKeys,
    decode_signon_keys,
    encode_signon_keys,
    generate_master_key,
    generate_working_keys,
    kcv_hex,
    key_check_value,
)
from cardtally.security._mac import MAC_BYTES, MacAlgorithm, compute_mac, verify_mac
from cardtally.security._message_mac import message_mac_ok, sign_message
from cardtally.security._pan_protect import (
    ProtectedPan,
    pan_fingerprint,
    protect_pan,
    reveal_pan,
)
from cardtally.security._pin_verify import (
    DECIMALISATION_TABLE,
    PinVerification,
    make_pin_verification,
    verify_pin,
)
from cardtally.security._pinblock import PIN_BLOCK_BYTES, decrypt_pin_block, encrypt_pin_block
from cardtally.security._sealed import open_secret, seal_secret

__all__ = [
    "DATA_KEYS_ENV",
    "DECIMALISATION_TABLE",
    "ISSUER_KEYS_ENV",
    "KCV_BYTES",
    "MAC_BYTES",
    "PIN_BLOCK_BYTES",
    "SIGNON_KEYS_BYTES",
    "DataKeys",
    "IssuerKeys",
    "KeyCheckError",
    "KeyFileError",
    "MacAlgorithm",
    "PinBlockError",
    "PinVerification",
    "ProtectedPan",
    "SecurityError",
    "WorkingKeys",
    "compute_mac",
    "create_data_keys",
    "create_issuer_keys",
    "data_keys_path",
    "decode_signon_keys",
    "decrypt_pin_block",
    "encode_signon_keys",
    "encrypt_pin_block",
    "generate_master_key",
    "generate_working_keys",
    "issuer_keys_path",
    "kcv_hex",
    "key_check_value",
    "load_data_keys",
    "load_issuer_keys",
    "make_pin_verification",
    "message_mac_ok",
    "open_secret",
    "pan_fingerprint",
    "protect_pan",
    "reveal_pan",
    "seal_secret",
    "sign_message",
    "verify_mac",
    "verify_pin",
]
