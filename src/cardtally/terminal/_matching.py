"""Does an answer belong to the request, and can it be trusted? (wire profile 6, "Matching").

Three verdicts, because they lead to three different actions:

- **ours**: the answer is to this request and checks out; it may clear the reversal;
- **not ours**: another request's answer (other MTI or STAN), e.g. a late answer to an
  earlier try; the terminal keeps waiting for its own until the deadline;
- **bad**: unreadable, or to this request but mismatching or with a MAC that fails; it
  never counts as approval and it ends the wait with the reversal reason 06 or A0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardtally.security import MacAlgorithm, WorkingKeys, message_mac_ok
from cardtally.wire import DecodeError, Message, decode_message, response_mti

#: Fields an answer must echo unchanged, when the request carried them.
_ECHO_CHECKED: Final = (3, 4, 41, 42)
REASON_NO_ANSWER: Final = "98"
REASON_MAC: Final = "A0"
REASON_OTHER: Final = "06"


@dataclass(frozen=True, slots=True)
class Verdict:
    message: Message | None  # the answer, when it decoded
    ours: bool
    reason: str | None = None  # None: it checks out; else the reversal reason
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.ours and self.reason is None


def check_answer(
    request: Message, raw: bytes, algorithm: MacAlgorithm, keys: WorkingKeys | None
) -> Verdict:
    """Judge ``raw`` as the answer to ``request`` (see the module docstring)."""
    try:
        answer = decode_message(raw)
    except DecodeError as exc:
        return Verdict(None, True, REASON_OTHER, f"unreadable answer: {exc}")
    if answer.mti != response_mti(request.mti) or answer.get(11) != request.get(11):
        return Verdict(answer, False, None, f"not our answer ({answer.mti}, STAN {answer.stan})")
    for number in _ECHO_CHECKED:
        if number in request.fields and _norm(answer.get(number)) != _norm(request.get(number)):
            return Verdict(answer, True, REASON_OTHER, f"field {number} does not match")
    code = answer.response_code
    if code is None:
        return Verdict(answer, True, REASON_OTHER, "answer without a response code")
    return _mac_verdict(answer, raw, algorithm, keys)


def _mac_verdict(
    answer: Message, raw: bytes, algorithm: MacAlgorithm, keys: WorkingKeys | None
) -> Verdict:
    if keys is None:  # the sign-on answer: the keys are what it brings
        return Verdict(answer, True)
    # Every answer must verify once the terminal has keys, declines included: an unsigned
    # decline that cleared the reversal could hide an approval (wire profile 6).
    if answer.mac is None:
        return Verdict(answer, True, REASON_MAC, "an answer without a MAC")
    if not message_mac_ok(raw, answer, algorithm, keys.mac_key):
        return Verdict(answer, True, REASON_MAC, "the answer's MAC does not verify")
    return Verdict(answer, True)


def _norm(value: str | None) -> str | None:
    return None if value is None else value.rstrip()
