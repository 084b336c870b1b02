"""The tables reconciliation reads and writes, as DuckDB DDL: the contract between the
extract (SQL stores -> DuckDB), the matcher, the clearing files and the benchmark.

Every amount is an integer of minor units. Kinds are the wire's (``sale``, ``completion``,
``void``, ``refund``); pre-authorisation holds and balance inquiries move no money and are
never loaded. Text keys are kept exactly as the parties store them (STAN 6 digits, RRN 12,
field 7 ``MMDDhhmmss``) so joins compare like with like. No PRIMARY KEY clauses: the sources'
keys already make rows unique, and DuckDB indexes would slow the bulk load of a 10M-row day.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

#: The switch log's money transactions in scope for one business day: those received in the
#: day's window, plus earlier ones still waiting for their terminal batch (``carried``).
SW_TXN_DDL: Final = """
CREATE TABLE sw_txn (
    txn_id          BIGINT  NOT NULL,    -- switch_txn.id; the RRN is lpad(txn_id, 12, '0')
    kind            VARCHAR NOT NULL,    -- sale | completion | void | refund
    state           VARCHAR NOT NULL,    -- the switch's state now (switch.TxnState)
    terminal_id     VARCHAR NOT NULL,
    merchant_id     VARCHAR NOT NULL,
    batch_no        INTEGER NOT NULL,
    stan            VARCHAR NOT NULL,    -- the terminal's STAN (field 11 from the terminal)
    amount_minor    BIGINT  NOT NULL,
    currency        VARCHAR NOT NULL,
    link_id         VARCHAR,             -- the issuer link it was routed to (NULL: never routed)
    issuer_stan     VARCHAR,             -- field 11 the switch sent the issuer
    transmitted     VARCHAR,             -- field 7 the switch sent the issuer
    response_code   VARCHAR,
    auth_code       VARCHAR,
    pan_masked      VARCHAR NOT NULL,
    original_id     BIGINT,              -- void / refund: the sale's txn_id
    received_at_ms  BIGINT  NOT NULL,
    carried         BOOLEAN NOT NULL     -- classified awaiting_batch on an earlier day
)
"""

#: Batches the terminals have closed (0500) that matter for the day: those of the ``sw_txn``
#: rows and those not yet reconciled. ``claimed``: its upload records were reconciled on an
#: earlier day, so an unknown record in it is not reported twice.
SW_BATCH_DDL: Final = """
CREATE TABLE sw_batch (
    terminal_id     VARCHAR NOT NULL,
    batch_no        INTEGER NOT NULL,
    result          VARCHAR NOT NULL,    -- balanced | not_balanced
    closed_at_ms    BIGINT  NOT NULL,
    claimed         BOOLEAN NOT NULL
)
"""

#: The records a terminal uploaded (0320) for a not-balanced batch, with what the switch
#: found different when it received each ('' when it agreed).
SW_UPLOAD_DDL: Final = """
CREATE TABLE sw_upload (
    terminal_id     VARCHAR NOT NULL,
    batch_no        INTEGER NOT NULL,
    stan            VARCHAR NOT NULL,
    rrn             VARCHAR NOT NULL,
    amount_minor    BIGINT  NOT NULL,
    processing_code VARCHAR NOT NULL,
    difference      VARCHAR NOT NULL,    -- 'unknown at the switch', 'amount: ...', ...
    merchant_id     VARCHAR NOT NULL,    -- the terminal's merchant in the registry
    currency        VARCHAR NOT NULL     -- the network currency
)
"""

#: The issuer's approved postings that moved money, not yet reconciled on an earlier day and
#: posted before the day's cutoff plus a grace (answers straddling the cutoff). Day-end
#: refunds (ids starting ``dayend:``) are never loaded: they are the day end's own actions.
ISS_TXN_DDL: Final = """
CREATE TABLE iss_txn (
    issuer_txn_id   VARCHAR NOT NULL,    -- issuer_txn.id (the request key)
    kind            VARCHAR NOT NULL,    -- sale | completion | void | refund
    terminal_id     VARCHAR NOT NULL,
    merchant_id     VARCHAR NOT NULL,
    stan            VARCHAR NOT NULL,    -- the switch's issuer_stan
    transmitted     VARCHAR NOT NULL,    -- the switch's transmitted
    rrn             VARCHAR NOT NULL,    -- own RRN for sale/completion, '' for void/refund
    amount_minor    BIGINT  NOT NULL,
    currency        VARCHAR NOT NULL,
    in_effect       BOOLEAN NOT NULL,    -- no approved reversal has undone it since
    at_ms           BIGINT  NOT NULL
)
"""

#: One row per transaction (or orphan record) of the day, in exactly one class.
RECON_ITEM_DDL: Final = """
CREATE TABLE recon_item (
    item_no               BIGINT  NOT NULL,  -- 1.. in a stable order (switch rows by txn_id,
                                             -- then issuer-only by id, then terminal-only)
    class                 VARCHAR NOT NULL,  -- ReconClass
    reason                VARCHAR NOT NULL,  -- plain words: why this class
    switch_txn_id         BIGINT,
    issuer_txn_id         VARCHAR,
    kind                  VARCHAR NOT NULL,
    terminal_id           VARCHAR NOT NULL,
    merchant_id           VARCHAR NOT NULL,
    batch_no              INTEGER,
    stan                  VARCHAR NOT NULL,
    rrn                   VARCHAR NOT NULL,
    amount_minor          BIGINT  NOT NULL,  -- switch's, else issuer's, else terminal's
    issuer_amount_minor   BIGINT,
    terminal_amount_minor BIGINT,
    currency              VARCHAR NOT NULL,
    link_id               VARCHAR,
    cleared_as            VARCHAR,           -- 'debit' | 'credit' in the clearing file, else NULL
    at_ms                 BIGINT  NOT NULL   -- switch received_at_ms, else issuer at_ms
)
"""

INPUT_DDL: Final = (SW_TXN_DDL, SW_BATCH_DDL, SW_UPLOAD_DDL, ISS_TXN_DDL)


class ReconClass(StrEnum):
    """Where a transaction of the day landed. Only ``MATCHED`` rows may be cleared."""

    MATCHED = "matched"  # all three legs agree (a same-day voided pair included, not cleared)
    ONE_SIDED_DEBIT = "one_sided_debit"  # issuer debit, no successful sale: refunded
    MISSING_AT_ISSUER = "missing_at_issuer"  # approved at the switch, no posting in effect
    UNKNOWN_TO_HOST = "unknown_to_host"  # receipted at the terminal, host unaware or failed
    AMOUNT_MISMATCH = "amount_mismatch"  # the legs disagree on the amount
    ONE_SIDED_CREDIT = "one_sided_credit"  # issuer credit in effect, switch shows no success
    AWAITING_BATCH = "awaiting_batch"  # approved both sides; the terminal has not settled
    UNSUCCESSFUL = "unsuccessful"  # no money moved on any leg (declined, reversed...)


#: Classes that are exceptions for operations: nothing automatic can repair them.
EXCEPTIONS: Final = frozenset(
    {
        ReconClass.MISSING_AT_ISSUER,
        ReconClass.UNKNOWN_TO_HOST,
        ReconClass.AMOUNT_MISMATCH,
        ReconClass.ONE_SIDED_CREDIT,
    }
)
