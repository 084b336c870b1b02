"""Matching the three legs of a business day: one ``recon_item`` per transaction, one class each.

Everything is set-based SQL over the tables of ``_tables``: one pass joins the switch log, the
issuer's postings and the terminals' upload records (both outer, so the rows only one party has
come out of the same pass as the matches) and classifies every row; small statements after it
then touch the few rows that need a second look (an issuer-only posting and a terminal-only
upload of the same RRN, the numbers of the rows the switch does not have, the same-day voided
pairs, which are matched but not cleared). The rules, first that applies:

switch row approved: no posting in effect at the issuer -> missing_at_issuer; issuer amount
differs -> amount_mismatch; batch not closed -> awaiting_batch; batch not balanced and the
record not in its upload -> one_sided_debit / _credit; uploaded amount differs ->
amount_mismatch; else matched.
switch row not approved: in the upload -> unknown_to_host; issuer posting in effect ->
one_sided_debit / _credit; else unsuccessful.
issuer row with no switch row, before the cutoff: in effect -> one_sided_debit / _credit, else
unsuccessful. Upload record unknown at the switch, batch not yet claimed -> unknown_to_host
(with the issuer-only posting of the same terminal, merchant and RRN, if any, in the same item).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import duckdb

from cardtally.clearing._tables import EXCEPTIONS, INPUT_DDL, RECON_ITEM_DDL, ReconClass

# One pass over the legs. Both joins to the switch log are FULL joins: the issuer rows and the
# upload records nobody on the switch side claims come out with s.* NULL, so the issuer-only and
# terminal-only items need no second 10M-row join (an anti-join would build its hash table
# again). An upload record joins only through a switch row, so a row with s.* NULL has exactly
# one of i.* and u.*.
#
# A switch row's item_no is 1 + the number of switch rows with a smaller txn_id (ids are unique).
# Counted per block of 64 ids, as a row count and a 64-bit mask of the ids present plus a running
# sum over the blocks, it needs neither a sort of the rows (a window carrying the whole row costs
# ten times more) nor a join back on txn_id (the blocks are 64 times fewer than the rows). A
# block with more rows than ids present holds an id twice, which would number two items alike:
# that stops the run (the extract loads switch_txn.id, a primary key, so it never should).
_LEGS: Final = """
WITH block AS (
    SELECT txn_id >> 6 AS block, count(*) AS n,
        bit_or(1::UBIGINT << (txn_id & 63)::UBIGINT) AS present
    FROM sw_txn GROUP BY ALL
), numbered AS (
    SELECT block, present, CASE WHEN n = bit_count(present)
        THEN (sum(n) OVER (ORDER BY block) - n)::BIGINT
        ELSE error('sw_txn holds a txn_id twice, between ' || (block << 6) || ' and '
            || ((block << 6) + 63))
    END AS before
    FROM block
), uploaded AS (
    SELECT u.*, b.claimed, b.closed_at_ms
    FROM sw_upload AS u LEFT JOIN sw_batch AS b USING (terminal_id, batch_no)
)
SELECT
    r.before + bit_count(r.present & ((1::UBIGINT << (s.txn_id & 63)::UBIGINT) - 1)) + 1
        AS item_no,
    s.txn_id, s.state, s.amount_minor AS s_amount, s.response_code,
    i.issuer_txn_id, i.amount_minor AS i_amount, i.in_effect,
    u.stan AS u_stan, u.amount_minor AS u_amount, b.result,
    coalesce(s.terminal_id, i.terminal_id, u.terminal_id) AS terminal_id,
    coalesce(s.merchant_id, i.merchant_id, u.merchant_id) AS merchant_id,
    coalesce(s.batch_no, u.batch_no) AS batch_no,
    coalesce(s.stan, i.stan, u.stan) AS stan,
    coalesce(lpad(s.txn_id::VARCHAR, 12, '0'), i.rrn, u.rrn) AS rrn,
    coalesce(s.currency, i.currency, u.currency) AS currency,
    s.link_id,
    coalesce(s.received_at_ms, i.at_ms, u.closed_at_ms) AS at_ms,
    coalesce(
        s.kind, i.kind,
        CASE WHEN starts_with(u.processing_code, '00') THEN 'sale' ELSE 'refund' END
    ) AS kind,
    coalesce(s.kind, i.kind) IN ('sale', 'completion') AS is_debit  -- else void, refund
FROM sw_txn AS s
FULL JOIN iss_txn AS i
    ON i.terminal_id = s.terminal_id AND i.merchant_id = s.merchant_id
    AND i.stan = s.issuer_stan AND i.transmitted = s.transmitted
LEFT JOIN numbered AS r ON r.block = s.txn_id >> 6
LEFT JOIN sw_batch AS b ON b.terminal_id = s.terminal_id AND b.batch_no = s.batch_no
FULL JOIN uploaded AS u
    ON u.terminal_id = s.terminal_id AND u.batch_no = s.batch_no AND u.stan = s.stan
WHERE s.txn_id IS NOT NULL
    OR (i.issuer_txn_id IS NOT NULL AND i.at_ms < $cutoff_ms)
    OR (u.stan IS NOT NULL AND NOT u.claimed AND u.difference = 'unknown at the switch')
"""

# The switch's words for a transaction that moved no money, by its state.
_UNSUCCESSFUL_REASON: Final = """CASE state
    WHEN 'declined' THEN 'declined by the issuer (rc ' || coalesce(response_code, 'none') || ')'
    WHEN 'refused' THEN 'refused by the switch (rc ' || coalesce(response_code, 'none') || ')'
    WHEN 'timed_out' THEN 'timed out; nothing in effect at the issuer'
    WHEN 'reversed' THEN 'reversed; nothing in effect at the issuer'
    WHEN 'reversal_pending' THEN 'reversal queued at the switch; nothing in effect at the issuer'
    WHEN 'reversal_refused' THEN 'the issuer refused the reversal; nothing in effect there'
    WHEN 'forwarded' THEN 'no answer from the issuer; nothing in effect at the issuer'
    WHEN 'received' THEN 'never forwarded to the issuer; nothing in effect there'
    ELSE 'switch has it ' || state || '; nothing in effect at the issuer'
END"""

# Which rule applies, the first that does (A: approved switch rows, B: the switch's others,
# C: issuer-only, D: terminal-only, in the order of the module docstring). A short code, so the
# class and the words are looked up below without testing the rules twice; building both in
# one CASE (as a struct) cost a third of the whole statement.
_RULE: Final = """CASE
    WHEN txn_id IS NULL AND issuer_txn_id IS NULL THEN 'D_unknown'
    WHEN txn_id IS NULL THEN CASE WHEN in_effect THEN 'C_in_effect' ELSE 'C_undone' END
    WHEN state = 'approved' THEN CASE
        WHEN issuer_txn_id IS NULL THEN 'A1_none'
        WHEN NOT in_effect THEN 'A1_undone'
        WHEN i_amount <> s_amount THEN 'A2_amount'
        WHEN result IS NULL THEN 'A3_open'
        WHEN result = 'not_balanced' AND u_stan IS NULL THEN 'A4_no_upload'
        WHEN u_amount <> s_amount THEN 'A5_amount'
        ELSE 'A6_agreed'
    END
    WHEN u_stan IS NOT NULL THEN 'B1_receipted'
    WHEN in_effect THEN 'B2_in_effect'
    ELSE 'B3_failed'
END"""

_CLASS: Final = """CASE
    WHEN rule = 'A6_agreed' THEN 'matched'
    WHEN rule IN ('A1_none', 'A1_undone') THEN 'missing_at_issuer'
    WHEN rule IN ('A2_amount', 'A5_amount') THEN 'amount_mismatch'
    WHEN rule = 'A3_open' THEN 'awaiting_batch'
    WHEN rule IN ('B1_receipted', 'D_unknown') THEN 'unknown_to_host'
    WHEN rule IN ('A4_no_upload', 'B2_in_effect', 'C_in_effect') THEN
        CASE WHEN is_debit THEN 'one_sided_debit' ELSE 'one_sided_credit' END
    ELSE 'unsuccessful'
END"""

_REASON: Final = f"""CASE rule
    WHEN 'A6_agreed' THEN CASE WHEN u_stan IS NULL
        THEN 'switch and issuer agree; terminal batch balanced'
        ELSE 'switch, issuer and the terminal''s upload agree' END
    WHEN 'A1_none' THEN 'issuer has no posting for it'
    WHEN 'A1_undone' THEN 'issuer reversed it since'
    WHEN 'A2_amount' THEN 'amount differs: switch ' || s_amount || ', issuer ' || i_amount
    WHEN 'A3_open' THEN 'terminal batch ' || lpad(batch_no::VARCHAR, 6, '0') || ' not settled yet'
    WHEN 'A4_no_upload' THEN 'approved but never receipted at the terminal: not in the upload'
        || ' of its not-balanced batch ' || lpad(batch_no::VARCHAR, 6, '0')
    WHEN 'A5_amount' THEN 'amount differs: terminal ' || u_amount || ', switch ' || s_amount
    WHEN 'B1_receipted' THEN 'receipted at the terminal but the switch has it ' || state
    WHEN 'B2_in_effect' THEN 'switch has it ' || state || '; the issuer''s '
        || CASE WHEN is_debit THEN 'debit' ELSE 'credit' END || ' is still in effect'
    WHEN 'B3_failed' THEN {_UNSUCCESSFUL_REASON}
    WHEN 'C_in_effect' THEN 'issuer '
        || CASE WHEN is_debit THEN 'debit' ELSE 'credit' END || ' with no switch record'
    WHEN 'C_undone' THEN 'issuer-only record, undone since'
    WHEN 'D_unknown' THEN 'uploaded by the terminal, unknown at the switch'
END"""

# Every matched row clears in its direction here; same-day voided pairs are undone below.
# Rows only the issuer or a terminal has get item_no 0 until _NUMBER_OTHERS.
_ITEMS: Final = f"""
INSERT INTO recon_item
WITH legs AS ({_LEGS}), judged AS (SELECT *, {_RULE} AS rule FROM legs)
SELECT
    coalesce(item_no, 0), {_CLASS}, {_REASON}, txn_id, issuer_txn_id, kind,
    terminal_id, merchant_id, batch_no, stan, rrn, coalesce(s_amount, i_amount, u_amount),
    i_amount, u_amount, currency, link_id,
    CASE WHEN rule = 'A6_agreed' THEN CASE WHEN is_debit THEN 'debit' ELSE 'credit' END END,
    at_ms
FROM judged
"""  # noqa: S608 - composed of the constant fragments above, no input

# After the switch rows: the issuer-only items by id, then the terminal-only ones. Few rows.
_NUMBER_OTHERS: Final = """
UPDATE recon_item AS r
SET item_no = o.item_no
FROM (
    SELECT rowid AS row_id, (SELECT count(*) FROM sw_txn) + row_number() OVER (
        ORDER BY issuer_txn_id NULLS LAST, terminal_id, batch_no, stan
    ) AS item_no
    FROM recon_item WHERE switch_txn_id IS NULL
) AS o
WHERE r.rowid = o.row_id
"""

# A void matched together with its same-day sale: the two cancel out, so neither is cleared.
# Only voids point at a sale through original_id this way (refunds are cleared on their own).
_VOIDED_PAIRS: Final = """
UPDATE recon_item AS r
SET cleared_as = NULL, reason = p.reason
FROM (
    SELECT unnest([v.switch_txn_id, s.original_id]) AS txn_id,
        unnest(['voids a sale of the same day', 'voided the same day']) AS reason
    FROM recon_item AS v
    JOIN sw_txn AS s ON s.txn_id = v.switch_txn_id
    JOIN recon_item AS o ON o.switch_txn_id = s.original_id
    WHERE v.kind = 'void' AND v.class = 'matched'
        AND o.class = 'matched' AND o.kind IN ('sale', 'completion')
) AS p
WHERE r.switch_txn_id = p.txn_id
"""

# A switch that lost a sale (restored from a backup, say) leaves the issuer's debit and the
# terminal's upload of the same swipe unjoined, as an issuer-only and a terminal-only item. The
# issuer keeps the switch's RRN (field 37) and the terminal uploads it, so the two are one swipe
# when terminal, merchant and RRN agree: one unknown_to_host exception, never a refund of a
# debit the cardholder holds a receipt for. Few rows: only items nobody on the switch claimed.
_RECEIPTED_ISSUER_ONLY: Final = (
    """
UPDATE recon_item AS t
SET issuer_txn_id = i.issuer_txn_id, issuer_amount_minor = i.amount_minor,
    reason = 'uploaded by the terminal and posted at the issuer, unknown at the switch'
FROM recon_item AS i
WHERE t.switch_txn_id IS NULL AND t.issuer_txn_id IS NULL AND t.class = 'unknown_to_host'
    AND i.switch_txn_id IS NULL AND i.issuer_txn_id IS NOT NULL
    AND i.class IN ('one_sided_debit', 'one_sided_credit')
    AND i.terminal_id = t.terminal_id AND i.merchant_id = t.merchant_id AND i.rrn = t.rrn
    AND i.rrn <> ''
""",
    """
DELETE FROM recon_item
WHERE switch_txn_id IS NULL AND class <> 'unknown_to_host' AND issuer_txn_id IN (
    SELECT issuer_txn_id FROM recon_item
    WHERE switch_txn_id IS NULL AND class = 'unknown_to_host' AND issuer_txn_id IS NOT NULL
)
""",
)

_COUNTS: Final = "SELECT class, count(*) FROM recon_item GROUP BY class"


@dataclass(frozen=True, slots=True)
class ReconCounts:
    """How many items of the day landed in each class (every class present, zeros included)."""

    by_class: Mapping[ReconClass, int]

    @classmethod
    def of(cls, counted: Mapping[ReconClass, int]) -> ReconCounts:
        return cls(MappingProxyType({c: counted.get(c, 0) for c in ReconClass}))

    @property
    def total(self) -> int:
        return sum(self.by_class.values())

    @property
    def exceptions(self) -> int:
        """Items nothing automatic can repair: operations must look at them."""
        return sum(n for c, n in self.by_class.items() if c in EXCEPTIONS)


def create_inputs(con: duckdb.DuckDBPyConnection) -> None:
    """The four empty input tables, for the extract (or a test) to fill."""
    for ddl in INPUT_DDL:
        con.execute(ddl)


def reconcile(con: duckdb.DuckDBPyConnection, *, cutoff_ms: int) -> ReconCounts:
    """(Re)build ``recon_item`` from the input tables and count it by class.

    Issuer rows no switch row claims count only if posted before ``cutoff_ms``; later ones
    belong to the next day. Call it outside a transaction: DuckDB updates the rows of an
    uncommitted 10M-row insert several times slower, so each statement commits on its own, and
    a run that fails drops the table rather than leave half a day in it.
    """
    con.execute("DROP TABLE IF EXISTS recon_item")
    con.execute(RECON_ITEM_DDL)
    try:
        con.execute(_ITEMS, {"cutoff_ms": cutoff_ms})
        for statement in _RECEIPTED_ISSUER_ONLY:
            con.execute(statement)
        con.execute(_NUMBER_OTHERS)  # after the merge above: it deletes issuer-only items
        con.execute(_VOIDED_PAIRS)
        rows = con.execute(_COUNTS).fetchall()
    except BaseException:
        con.execute("DROP TABLE IF EXISTS recon_item")
        raise
    return ReconCounts.of({ReconClass(name): int(n) for name, n in rows})
