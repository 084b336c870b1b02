"""Cardholder notices through an outbox, delivered at least once to pluggable sinks.

The issuer writes one notice per debit, refund, void and reversal in the same
transaction as the ledger change; a dispatcher delivers each committed notice to
every sink later, at least once, under a stable id receivers deduplicate by::

    with transaction(engine) as conn:          # the issuer's ledger transaction
        ...                                    # post the transfer
        NoticeOutbox(conn).add(Notice(...))    # same connection, same commit

    dispatcher = NoticeDispatcher(engine, build_sinks(["console"], jsonl_path=None,
                                                      webhook_url=None))
    await dispatcher.run(stop, wake=new_notices)

A notice carries only the last four digits of the card.
"""

from cardtally.notices._dispatcher import DeliveryReport, NoticeDispatcher
from cardtally.notices._errors import DeliveryError, NoticeError
from cardtally.notices._notice import CHINA_STANDARD_TIME, Notice, NoticeKind, render_text
from cardtally.notices._outbox import NoticeOutbox
from cardtally.notices._schema import (
    NOTICES_TREE,
    notice_delivery_table,
    notice_table,
    notices_metadata,
)
from cardtally.notices._sinks import (
    BatchNoticeSink,
    ConsoleSink,
    JsonLinesSink,
    NoticeSink,
    WebhookSink,
    build_sinks,
    notice_document,
)

__all__ = [
    "CHINA_STANDARD_TIME",
    "NOTICES_TREE",
    "BatchNoticeSink",
    "ConsoleSink",
    "DeliveryError",
    "DeliveryReport",
    "JsonLinesSink",
    "Notice",
    "NoticeDispatcher",
    "NoticeError",
    "NoticeKind",
    "NoticeOutbox",
    "NoticeSink",
    "WebhookSink",
    "build_sinks",
    "notice_delivery_table",
    "notice_document",
    "notice_table",
    "notices_metadata",
    "render_text",
]
