"""The cardtally ISO 8583:1987 wire profile: framing, codec, message view, codes.

>>> from cardtally.wire import Message, encode_message, decode_message
>>> sale = Message("0200", {3: "000000", 4: "000000012345", 11: "000123",
...                         41: "T0000001", 42: "M00000000000001"})
>>> raw = encode_message(sale)
>>> decode_message(raw).amount
Money(minor=12345, currency='156')
"""

from cardtally.wire._codec import (
    decode_message,
    encode_message,
    encode_signed,
    mac_field_of,
    split_mac,
)
from cardtally.wire._codes import RESPONSE_CODES, Action, ResponseCode, describe
from cardtally.wire._errors import DecodeError, EncodeError, FrameTooLargeError, WireError
from cardtally.wire._framing import (
    APP_HEADER_BYTES,
    FRAME_BYTES_MAX_DEFAULT,
    LENGTH_PREFIX_BYTES,
    TPDU_BYTES,
    Frame,
    FrameDecoder,
    LinkProfile,
    Tpdu,
    decode_frame,
    decode_framed,
    encode_frame,
)
from cardtally.wire._kinds import CREDIT_KINDS, DEBIT_KINDS, TxnKind, classify, content_digest
from cardtally.wire._message import ECHOED_FIELDS, Message, pad_merchant_id, pad_terminal_id
from cardtally.wire._mti import describe_mti, is_repeat, is_request, original_of, response_mti
from cardtally.wire._network_time import LOCAL_TIME, LocalTime, local_text, transmission_time
from cardtally.wire._pan import (
    Pan,
    PanError,
    luhn_check_digit,
    luhn_ok,
    mask_pan,
    masked_field,
)
from cardtally.wire._spec import DEFINED_FIELDS, KNOWN_MTIS, SPEC
from cardtally.wire._totals import TOTALS_DIGITS, BatchTotals

__all__ = [
    "APP_HEADER_BYTES",
    "CREDIT_KINDS",
    "DEBIT_KINDS",
    "DEFINED_FIELDS",
    "ECHOED_FIELDS",
    "FRAME_BYTES_MAX_DEFAULT",
    "KNOWN_MTIS",
    "LENGTH_PREFIX_BYTES",
    "LOCAL_TIME",
    "RESPONSE_CODES",
    "SPEC",
    "TOTALS_DIGITS",
    "TPDU_BYTES",
    "Action",
    "BatchTotals",
    "DecodeError",
    "EncodeError",
    "Frame",
    "FrameDecoder",
    "FrameTooLargeError",
    "LinkProfile",
    "LocalTime",
    "Message",
    "Pan",
    "PanError",
    "ResponseCode",
    "Tpdu",
    "TxnKind",
    "WireError",
    "classify",
    "content_digest",
    "decode_frame",
    "decode_framed",
    "decode_message",
    "describe",
    "describe_mti",
    "encode_frame",
    "encode_message",
    "encode_signed",
    "is_repeat",
    "is_request",
    "local_text",
    "luhn_check_digit",
    "luhn_ok",
    "mac_field_of",
    "mask_pan",
    "masked_field",
    "original_of",
    "pad_merchant_id",
    "pad_terminal_id",
    "response_mti",
    "split_mac",
    "transmission_time",
]
