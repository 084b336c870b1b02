"""A seeded mutation fuzzer for the untrusted-input path: frame bytes -> Message.

Used by the test suite (100,000 frames by default) and for longer campaigns:

    CARDTALLY_FUZZ_FRAMES=5000000 CARDTALLY_FUZZ_SEED=7 pytest tests/wire/test_fuzz.py

The only acceptable outcomes for any input are a decoded message, the
project's ``DecodeError`` (or its ``FrameTooLargeError``), or a frame still
waiting for more bytes.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Callable

from cardtally.wire import (
    DEFINED_FIELDS,
    KNOWN_MTIS,
    SPEC,
    DecodeError,
    FrameDecoder,
    FrameTooLargeError,
    LinkProfile,
    Message,
    Tpdu,
    decode_frame,
    encode_frame,
    encode_message,
)
from tests.wire.samples import ALL

FRAME_BYTES_MAX = 4096
_FIELDS = sorted(n for n in DEFINED_FIELDS if n != 1)
_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
_ALPHABETS = {
    "n": string.digits,
    "z": string.digits + "D",
    "an": string.ascii_letters + string.digits + " ",
}


def random_value(rng: random.Random, number: int) -> str:
    spec = SPEC[str(number)]
    size = spec["max_len"] if spec["len_type"] == 0 else rng.randint(0, min(spec["max_len"], 40))
    kind = spec["kind"]
    if kind == "b":
        return rng.randbytes(size).hex().upper()
    alphabet = {
        "n": string.digits,
        "z": string.digits + "D",
        "an": string.ascii_letters + string.digits + " ",
    }.get(kind, _PRINTABLE)
    return "".join(rng.choice(alphabet) for _ in range(size))


def random_message(rng: random.Random) -> Message:
    chosen = rng.sample(_FIELDS, rng.randint(0, 14))
    return Message(rng.choice(sorted(KNOWN_MTIS)), {n: random_value(rng, n) for n in chosen})


def seed_frames(rng: random.Random, count: int = 64) -> list[bytes]:
    messages = list(ALL) + [random_message(rng) for _ in range(count)]
    return [encode_frame(Tpdu(1, 2), encode_message(m)) for m in messages]


def _flip_bits(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _set_byte(rng: random.Random, data: bytearray) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.choice(
            (0x00, 0xFF, 0x99, 0xAA, 0x0D, rng.randrange(256))
        )


def _insert(rng: random.Random, data: bytearray) -> None:
    at = rng.randint(0, len(data))
    data[at:at] = rng.randbytes(rng.randint(1, 16))


def _delete(rng: random.Random, data: bytearray) -> None:
    if data:
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 16)]


def _truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randint(0, len(data)) :]


def _fix_length(rng: random.Random, data: bytearray) -> None:
    """Keep the length prefix honest so the mutation reaches the message decoder."""
    if len(data) >= 2:
        data[0:2] = (len(data) - 2).to_bytes(2, "big")


def _bogus_length(rng: random.Random, data: bytearray) -> None:
    if len(data) >= 2:
        data[0:2] = rng.randrange(0x10000).to_bytes(2, "big")


def _duplicate(rng: random.Random, data: bytearray) -> None:
    if data:
        at = rng.randrange(len(data))
        data[at:at] = data[at : at + rng.randint(1, 24)]


Mutation = Callable[[random.Random, bytearray], None]
MUTATIONS: tuple[Mutation, ...] = (
    _flip_bits,
    _set_byte,
    _insert,
    _delete,
    _truncate,
    _bogus_length,
    _duplicate,
)


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        rng.choice(MUTATIONS)(rng, data)
    if rng.random() < 0.7:
        _fix_length(rng, data)
    return bytes(data)


def fuzz_input(rng: random.Random, seeds: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randint(0, 200))
    if roll < 0.2:  # plausible prefix and TPDU, random message
        body = bytes([0x60]) + rng.randbytes(4) + rng.randbytes(rng.randint(0, 200))
        return len(body).to_bytes(2, "big") + body
    if roll < 0.25:  # several frames, one stream
        return b"".join(mutate(rng, rng.choice(seeds)) for _ in range(3))
    return mutate(rng, rng.choice(seeds))


def decode_all(data: bytes, profile: LinkProfile, outcomes: Counter[str]) -> None:
    """Push one input through the same path a server uses. Raises only on a bug."""
    decoder = FrameDecoder(FRAME_BYTES_MAX)
    try:
        bodies = decoder.feed(data)
    except FrameTooLargeError:
        outcomes["frame too large"] += 1
        return
    if not bodies:
        outcomes["incomplete"] += 1
    for body in bodies:
        try:
            decode_frame(body, profile)
        except DecodeError as exc:
            outcomes[f"decode error: field {exc.field}"] += 1
        else:
            outcomes["decoded"] += 1


def run_campaign(frames: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    seeds = seed_frames(rng)
    profile = LinkProfile(frame_bytes_max=FRAME_BYTES_MAX)
    outcomes: Counter[str] = Counter()
    for _ in range(frames):
        data = fuzz_input(rng, seeds)
        try:
            decode_all(data, profile, outcomes)
        except Exception as exc:
            raise AssertionError(
                f"{type(exc).__name__}: {exc} escaped decoding of {data.hex()}"
            ) from exc
    return outcomes
