"""Merchant settlement: statements from the day's cleared items, and the acquirer's postings.

The acquirer's ledger lives in the switch database. Per day and per account, credit-normal
(what the holder is owed):

- ``acquirer:issuer:<link>``: what the issuer behind a link owes us, from its clearing file;
- ``acquirer:clearing:<cur>``: suspense between the files and the merchants; it returns to
  zero at every day end, since the files and the statements are two sums of the same items;
- the merchant's settlement account (``merchant:<MID>`` unless the registry says otherwise);
- ``acquirer:mdr:<cur>`` (our share of the rate), ``agent:<name>`` (the agent's share);
- ``acquirer:payouts:<cur>``: what left for merchants' bank accounts.

Every transfer id names the day and what it is for, so a re-run never posts twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cardtally.clearing._calendar import BusinessDay
from cardtally.clearing._fees import FeeSchedule, MerchantDay, Statement, statement
from cardtally.clearing._schema import item_table, payout_table, statement_table
from cardtally.ledger import AccountSpec, Ledger, SqlLedgerStore, TransferSpec
from cardtally.switch._model import Merchant
from cardtally.switch._registry import list_merchants


@dataclass(frozen=True, slots=True)
class Payout:
    merchant_id: str
    for_day: str
    amount_minor: int
    transfer_id: str | None


def clearing_account(currency: str) -> str:
    return f"acquirer:clearing:{currency}"


def issuer_account(link_id: str) -> str:
    return f"acquirer:issuer:{link_id}"


def merchant_days(
    conn: Connection, day: BusinessDay, registry: Mapping[str, Merchant]
) -> list[MerchantDay]:
    """Each merchant's cleared sales and refunds of the day, with its registry terms."""
    i = item_table
    debit = i.c.cleared_as == "debit"
    credit = i.c.cleared_as == "credit"
    rows = conn.execute(
        sa.select(
            i.c.merchant_id,
            i.c.currency,
            sa.func.sum(sa.case((debit, 1), else_=0)),
            sa.func.sum(sa.case((debit, i.c.amount_minor), else_=0)),
            sa.func.sum(sa.case((credit, 1), else_=0)),
            sa.func.sum(sa.case((credit, i.c.amount_minor), else_=0)),
        )
        .where(i.c.day == day.text)
        .where(i.c.cleared_as.is_not(None))
        .group_by(i.c.merchant_id, i.c.currency)
        .order_by(i.c.merchant_id)
    ).all()
    days = []
    for mid, currency, sales_n, sales, refunds_n, refunds in rows:
        merchant = registry[mid]
        days.append(
            MerchantDay(
                merchant_id=mid,
                name=merchant.name,
                fee_plan=merchant.fee_plan,
                agent=merchant.agent,
                cycle=merchant.settlement_cycle.value,
                currency=currency,
                sales_count=int(sales_n),
                sales_minor=int(sales),
                refunds_count=int(refunds_n),
                refunds_minor=int(refunds),
            )
        )
    return days


def settle_day(
    conn: Connection,
    day: BusinessDay,
    *,
    pay_day_t1: str,
    schedule: FeeSchedule,
    link_nets: Iterable[tuple[str, str, int]],
    now_ms: int,
) -> tuple[list[Statement], list[Payout]]:
    """Statements, postings and today's payouts, in the caller's transaction."""
    ledger = Ledger(SqlLedgerStore(conn))
    for link_id, currency, net in link_nets:
        _post(
            ledger,
            f"dayend:{day.text}:receivable:{link_id}",
            debit=issuer_account(link_id),
            credit=clearing_account(currency),
            amount_minor=net,
            currency=currency,
            now_ms=now_ms,
        )
    registry = {m.merchant_id: m for m in list_merchants(conn)}
    accounts = {mid: m.settlement_account for mid, m in registry.items()}
    statements = [statement(d, schedule) for d in merchant_days(conn, day, registry)]
    for st in statements:
        pay_day = day.text if st.cycle == "d0" else pay_day_t1
        _post_statement(ledger, day, st, accounts[st.merchant_id], now_ms)
        conn.execute(statement_table.insert().values(_statement_row(day, st, pay_day, accounts)))
    return statements, pay_due(conn, ledger, day, now_ms)


def _post_statement(
    ledger: Ledger, day: BusinessDay, st: Statement, account_id: str, now_ms: int
) -> None:
    prefix, cur, mid = f"dayend:{day.text}", st.currency, st.merchant_id
    _post(
        ledger,
        f"{prefix}:sales:{mid}",
        debit=clearing_account(cur),
        credit=account_id,
        amount_minor=st.sales_minor,
        currency=cur,
        now_ms=now_ms,
    )
    _post(
        ledger,
        f"{prefix}:refunds:{mid}",
        debit=account_id,
        credit=clearing_account(cur),
        amount_minor=st.refunds_minor,
        currency=cur,
        now_ms=now_ms,
    )
    _post(
        ledger,
        f"{prefix}:mdr:{mid}",
        debit=account_id,
        credit=f"acquirer:mdr:{cur}",
        amount_minor=st.acquirer_fee_minor,
        currency=cur,
        now_ms=now_ms,
    )
    if st.agent is not None:
        _post(
            ledger,
            f"{prefix}:agent:{mid}",
            debit=account_id,
            credit=f"agent:{st.agent}",
            amount_minor=st.agent_minor,
            currency=cur,
            now_ms=now_ms,
        )


def pay_due(conn: Connection, ledger: Ledger, day: BusinessDay, now_ms: int) -> list[Payout]:
    """Pay every statement due today, never more than the merchant's account holds."""
    s, p = statement_table, payout_table
    paid = sa.exists().where((p.c.for_day == s.c.day) & (p.c.merchant_id == s.c.merchant_id))
    due = conn.execute(
        sa.select(s.c.day, s.c.merchant_id, s.c.net_minor, s.c.currency, s.c.account_id)
        .where(s.c.pay_day == day.text)
        .where(sa.not_(paid))
        .order_by(s.c.day, s.c.merchant_id)
    ).all()
    payouts = []
    for for_day, mid, net, currency, account_id in due:
        amount = max(0, min(net, ledger.account(account_id).balance_minor))
        transfer_id = f"dayend:{day.text}:payout:{mid}:{for_day}" if amount else None
        if transfer_id is not None:
            _post(
                ledger,
                transfer_id,
                debit=account_id,
                credit=f"acquirer:payouts:{currency}",
                amount_minor=amount,
                currency=currency,
                now_ms=now_ms,
            )
        conn.execute(
            p.insert().values(
                day=day.text,
                merchant_id=mid,
                for_day=for_day,
                amount_minor=amount,
                transfer_id=transfer_id,
                at_ms=now_ms,
            )
        )
        payouts.append(Payout(mid, for_day, amount, transfer_id))
    return payouts


def _post(
    ledger: Ledger,
    transfer_id: str,
    *,
    debit: str,
    credit: str,
    amount_minor: int,
    currency: str,
    now_ms: int,
) -> None:
    """One transfer, opening its accounts on first use; nothing for a zero amount."""
    if amount_minor == 0:
        return
    if amount_minor < 0:
        debit, credit, amount_minor = credit, debit, -amount_minor
    for account_id in (debit, credit):
        ledger.open_account(AccountSpec(account_id, currency, None, ""), now_ms)
    ledger.transfer(TransferSpec(transfer_id, debit, credit, amount_minor, currency), now_ms)


def _statement_row(
    day: BusinessDay, st: Statement, pay_day: str, accounts: dict[str, str]
) -> dict[str, object]:
    return {
        "day": day.text,
        "merchant_id": st.merchant_id,
        "name": st.name,
        "fee_plan": st.fee_plan,
        "rate_ppm": st.rate_ppm,
        "agent": st.agent,
        "agent_ppm": st.agent_ppm,
        "cycle": st.cycle,
        "currency": st.currency,
        "sales_count": st.sales_count,
        "sales_minor": st.sales_minor,
        "refunds_count": st.refunds_count,
        "refunds_minor": st.refunds_minor,
        "fee_minor": st.fee_minor,
        "agent_minor": st.agent_minor,
        "net_minor": st.net_minor,
        "pay_day": pay_day,
        "account_id": accounts[st.merchant_id],
    }
