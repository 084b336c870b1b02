"""Answers to the terminal: built from the request (or the log), stored, signed when needed.

A stored answer is kept without its MAC and signed again whenever it is sent, so a repeat
after a new sign-on verifies under the terminal's current MAC key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cardtally.security import sign_message
from cardtally.switch._model import Terminal, TerminalKeys
from cardtally.switch._request import host_time_fields
from cardtally.wire import ECHOED_FIELDS, Message, encode_message, response_mti

#: Messages that carry a MAC between terminal and switch (wire profile section 7).
MACED_MTIS: Final = frozenset({"0100", "0200", "0220", "0320", "0400", "0500"})


def answer_fields(
    echo: Mapping[int, str], code: str, at_ms: int, extra: Mapping[int, str] = {}
) -> dict[int, str]:
    fields = dict(echo)
    fields.update(host_time_fields(at_ms))
    fields[39] = code
    fields.update(extra)
    return fields


def echo_of(request: Message) -> dict[int, str]:
    return {n: v for n, v in request.fields.items() if n in ECHOED_FIELDS}


def encode_answer(
    request_mti: str,
    fields: Mapping[int, str],
    terminal: Terminal | None,
    keys: TerminalKeys | None,
) -> tuple[Message, bytes]:
    """The answer (without its MAC) and its bytes: MTI + 10, signed when it is a MACed
    message and keys are there. The message goes with the bytes so that the runtime can log
    and count the answer without decoding it again.

    A terminal that signed on gets MACed answers even with MACs optional: a tool that does
    not check them ignores field 64, and a real terminal needs it to accept the answer.
    """
    message = Message(response_mti(request_mti), fields)
    maced = request_mti[:3] + "0" in MACED_MTIS
    if maced and terminal is not None and keys is not None and keys.working is not None:
        return message, sign_message(message, terminal.mac_algorithm, keys.working.mac_key)
    return message, encode_message(message)
