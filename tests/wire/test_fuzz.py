"""At least 100,000 random and mutated frames through framing and message decoding."""

from __future__ import annotations

import os

import pytest

from tests.wire.fuzzing import run_campaign

FRAMES = int(os.environ.get("CARDTALLY_FUZZ_FRAMES", "100000"))
SEED = int(os.environ.get("CARDTALLY_FUZZ_SEED", "20261121"))


@pytest.mark.fuzz
@pytest.mark.timeout(600)  # a hang is a failure, not a stuck CI job
def test_only_decode_errors_escape_untrusted_bytes() -> None:
    outcomes = run_campaign(FRAMES, SEED)
    # The campaign must exercise both sides of the decoder, or it proves nothing.
    assert outcomes["decoded"] > FRAMES // 100
    decode_errors = sum(v for k, v in outcomes.items() if k.startswith("decode error"))
    assert decode_errors > FRAMES // 4
    print(f"fuzz seed {SEED}: " + ", ".join(f"{k}={v}" for k, v in outcomes.most_common()))
