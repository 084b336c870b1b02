"""The POS terminal core: commands in, messages to send and slips to print out. No I/O.

A command runs as a *flow*: a generator that yields a :class:`Send` whenever it
needs the host, and is resumed with what came back (:class:`Answer` or
:class:`NoAnswer`). The shell (TCP runtime or simulator) does the sending, the
waiting and the clock; the flow does everything else, through the journal, in the
order the reversal discipline demands (domain brief, "Reversal"):

1. a pending reversal goes before any other online exchange, up to
   :data:`REVERSAL_TRIES_MAX` sends per exchange; it is cleared only by an answer
   that checks out, and is never deleted;
2. a money-moving request is written with its reversal record, in one commit,
   before it is sent;
3. its outcome is committed before anything is shown or printed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final

from cardtally.money import Money
from cardtally.security import SecurityError, decode_signon_keys
from cardtally.terminal import _receipts as slips
from cardtally.terminal._commands import (
    Balance,
    Command,
    Complete,
    Detail,
    Outcome,
    PreAuth,
    Refund,
    Reprint,
    Sale,
    Settle,
    SignOn,
    Status,
    Tamper,
    Unlock,
    Void,
)
from cardtally.terminal._journal_port import JournalPort
from cardtally.terminal._matching import REASON_NO_ANSWER, Verdict, check_answer
from cardtally.terminal._model import (
    REVERSAL_TRIES_MAX,
    BatchState,
    JournalTxn,
    Profile,
    Protection,
    ProtectionState,
    SlipHeader,
    TxnState,
    batch_totals,
)
from cardtally.terminal._passwords import verify_password
from cardtally.terminal._requests import (
    Card,
    TerminalIdentity,
    balance_inquiry,
    completion,
    original_data,
    preauth,
    refund,
    reversal_of,
    sale,
    settlement,
    sign,
    sign_on,
    upload_closing,
    upload_record,
    void,
)
from cardtally.wire import BatchTotals, LocalTime, Message, Pan, TxnKind, describe
from cardtally.wire import _codes as rc

ADMIN_TRIES_MAX: Final = 3
TIMEOUT_MS_DEFAULT: Final = 30_000
#: A reversal's answer that clears it: undone (00) or nothing to undo (25).
_REVERSAL_CLEARED: Final = frozenset({rc.APPROVED, rc.ORIGINAL_NOT_FOUND})
AUTO_REVERSAL_OK: Final = "AUTO REVERSAL SUCCESSFUL"
AUTO_REVERSAL_FAILED: Final = "AUTO REVERSAL UNSUCCESSFUL"


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``body`` (an ISO 8583 message) to the switch and wait up to ``timeout_ms``."""

    body: bytes
    timeout_ms: int
    what: str


@dataclass(frozen=True, slots=True)
class Wait:
    """What came was not for us: keep waiting until the same deadline."""


@dataclass(frozen=True, slots=True)
class Done:
    outcome: Outcome


Step = Send | Wait | Done


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes


@dataclass(frozen=True, slots=True)
class NoAnswer:
    why: str  # "timeout", "unreachable: ...", "link closed"


Event = Answer | NoAnswer
Flow = Generator[Send | Wait, Event, Outcome]
Exchange = Generator[Send | Wait, Event, Verdict]


class RefusedError(Exception):
    """The terminal refuses the command itself; the message is the screen text."""


class TerminalCore:
    """One terminal, one command at a time (see the module docstring)."""

    def __init__(self, journal: JournalPort, *, timeout_ms: int = TIMEOUT_MS_DEFAULT) -> None:
        assert timeout_ms > 0, "a response timeout must be positive"
        self.journal = journal
        self.timeout_ms = timeout_ms
        self._flow: Flow | None = None
        self._now_ms = 0
        self._screen: list[str] = []
        self._auto_reversal: str | None = None

    # -- driving -------------------------------------------------------------------------

    def start(self, command: Command, now_ms: int) -> Step:
        assert self._flow is None, "one command at a time"
        self._now_ms = now_ms
        self._screen = []
        self._auto_reversal = None
        self._flow = self._guarded(command)
        return self._advance(None)

    def on_event(self, event: Event, now_ms: int) -> Step:
        assert self._flow is not None, "no command is running"
        self._now_ms = now_ms
        return self._advance(event)

    def _advance(self, event: Event | None) -> Step:
        assert self._flow is not None
        try:
            step = self._flow.send(event) if event is not None else next(self._flow)
        except StopIteration as stop:
            self._flow = None
            outcome: Outcome = stop.value
            return Done(outcome)
        except BaseException:
            self._flow = None  # the journal holds what was committed; the next command recovers
            raise
        return step

    def _guarded(self, command: Command) -> Flow:
        try:
            return (yield from self._run(command))
        except RefusedError as refused:
            return self._outcome(Status.REFUSED, str(refused))

    def _run(self, command: Command) -> Flow:  # noqa: PLR0911 - one line per command
        match command:
            case Tamper():
                return self._tamper()
            case Unlock(password):
                return self._unlock(password)
        self._recover()
        self._require_unlocked()
        match command:
            case Reprint(voucher):
                return self._reprint(voucher)
            case Detail(batch_no):
                return self._detail(batch_no)
            case SignOn():
                return (yield from self._sign_on())
            case Settle(password):
                return (yield from self._settle(password))
        return (yield from self._transaction(command))

    # -- small helpers -------------------------------------------------------------------

    def _say(self, *lines: str) -> None:
        self._screen.extend(lines)

    def _outcome(self, status: Status, *lines: str, **extra: object) -> Outcome:
        self._say(*lines)
        auto = self._auto_reversal
        return Outcome(status, tuple(self._screen), auto_reversal=auto, **extra)  # type: ignore[arg-type]

    def _header(self, profile: Profile) -> SlipHeader:
        return SlipHeader(
            profile.merchant_name,
            profile.merchant_id,
            profile.terminal_id,
            profile.operator,
            profile.currency,
        )

    @staticmethod
    def _who(profile: Profile) -> TerminalIdentity:
        return TerminalIdentity(
            profile.terminal_id, profile.merchant_id, profile.currency, profile.operator
        )

    def _local_now(self) -> str:
        local = LocalTime.of(self._now_ms)
        return _display_time(local.date, local.hhmmss)

    def _recover(self) -> None:
        for txn in self.journal.recover(self._now_ms):
            self._say(f"VOUCHER {txn.voucher}: NO ANSWER BEFORE THE TERMINAL STOPPED")

    def _require_unlocked(self) -> None:
        protection = self.journal.protection()
        if protection.locked:
            raise RefusedError(
                f"TERMINAL LOCKED (PROTECTION MODE: {protection.reason}). "
                "NO TRANSACTIONS UNTIL UNLOCKED WITH THE UNLOCK PASSWORD"
            )

    def _require_signed_on(self, profile: Profile) -> None:
        if profile.keys is None:
            raise RefusedError("NOT SIGNED ON: SIGN ON FIRST")

    def _require_open_batch(self, profile: Profile) -> None:
        if self.journal.batch(profile.batch_no).state is BatchState.SETTLING:
            raise RefusedError(
                f"SETTLEMENT OF BATCH {profile.batch_no:06d} IN PROGRESS: FINISH IT (SETTLE)"
            )

    def _check_admin(self, password: str) -> None:
        admin_hash, _ = self.journal.password_hashes()
        state = self.journal.protection()
        if verify_password(password, admin_hash):
            if state.admin_failures:
                self.journal.set_protection(ProtectionState(state.mode), self._now_ms)
            return
        failures = state.admin_failures + 1
        if failures >= ADMIN_TRIES_MAX:
            reason = f"{ADMIN_TRIES_MAX} WRONG ADMINISTRATOR PASSWORDS"
            locked = ProtectionState(Protection.LOCKED, reason, self._now_ms, failures)
            self.journal.set_protection(locked, self._now_ms)
            raise RefusedError(f"WRONG ADMINISTRATOR PASSWORD. TERMINAL LOCKED ({reason})")
        self.journal.set_protection(ProtectionState(state.mode, None, None, failures), self._now_ms)
        raise RefusedError(f"WRONG ADMINISTRATOR PASSWORD ({failures} OF {ADMIN_TRIES_MAX})")

    # -- exchanges -----------------------------------------------------------------------

    def _exchange(self, message: Message, profile: Profile, *, mac: bool = True) -> Exchange:
        """Send ``message`` and come back with the verdict on the answer (or its absence)."""
        keys = profile.keys if mac else None
        body = sign(message, profile.mac_algorithm, keys)
        event = yield Send(body, self.timeout_ms, f"{message.mti} STAN {message.stan}")
        while True:
            if isinstance(event, NoAnswer):
                return Verdict(None, True, REASON_NO_ANSWER, event.why)
            verdict = check_answer(message, event.body, profile.mac_algorithm, keys)
            if verdict.ours:
                return verdict
            event = yield Wait()

    def _reversal_first(self, profile: Profile) -> Generator[Send | Wait, Event, bool]:
        """Send the pending reversal, if any. True when none is left pending."""
        pending = self.journal.pending_reversal()
        if pending is None:
            return True
        original = self.journal.txn(pending.txn_id)
        fields = dict(original.request) | {2: original.pan.reveal()}
        for _ in range(REVERSAL_TRIES_MAX):
            pending = self.journal.reversal_sent(pending.id, self._now_ms)
            message = reversal_of(Message("0200", fields), pending.reason, repeat=pending.sends > 1)
            verdict = yield from self._exchange(message, profile)
            if verdict.ok and verdict.message is not None:
                code = verdict.message.response_code or ""
                if code in _REVERSAL_CLEARED:
                    self.journal.reversal_cleared(pending.id, code, self._now_ms)
                    self._say(AUTO_REVERSAL_OK, f"(VOUCHER {pending.stan:06d} REVERSED)")
                    self._auto_reversal = "successful"
                    return True
        self.journal.reversal_flagged(pending.id, self._now_ms)
        self._auto_reversal = "unsuccessful"
        self._say(
            AUTO_REVERSAL_FAILED,
            f"(VOUCHER {pending.stan:06d} STAYS PENDING; IT GOES FIRST NEXT TIME)",
        )
        return False

    # -- sign-on -------------------------------------------------------------------------

    def _sign_on(self) -> Flow:
        profile = self.journal.profile()
        if profile.keys is not None:
            yield from self._reversal_first(profile)  # sign-on goes ahead either way: keys
        stan = self.journal.take_stan(self._now_ms, "sign-on")
        message = sign_on(self._who(profile), stan, profile.batch_no)
        verdict = yield from self._exchange(message, profile, mac=False)
        if not verdict.ok or verdict.message is None:
            return self._outcome(Status.NO_ANSWER, "SIGN-ON FAILED", f"({verdict.why})")
        answer = verdict.message
        if answer.response_code != rc.APPROVED or answer.get(62) is None:
            code = answer.response_code or "??"
            return self._outcome(
                Status.DECLINED, f"SIGN-ON REFUSED: {code} {describe(code).meaning}", code=code
            )
        try:
            keys = decode_signon_keys(profile.master_key, bytes.fromhex(answer.fields[62]))
        except SecurityError as exc:
            return self._outcome(Status.DECLINED, "SIGN-ON FAILED: KEYS REFUSED", f"({exc})")
        host_batch = int((answer.get(60) or "00000000")[2:8])
        batch = self.journal.signed_on(keys, host_batch, self._now_ms)
        return self._outcome(Status.APPROVED, "SIGN-ON SUCCESSFUL", f"BATCH NO: {batch:06d}")

    # -- cardholder transactions -----------------------------------------------------------

    def _transaction(self, command: Command) -> Flow:
        profile = self.journal.profile()
        self._require_signed_on(profile)
        self._require_open_batch(profile)
        if isinstance(command, Void | Refund):
            self._check_admin(command.admin_password)
        plan = self._plan(command, profile)  # refuses bad vouchers before any exchange
        clear = yield from self._reversal_first(profile)
        if not clear and plan.kind is not TxnKind.BALANCE:
            # One pending reversal at most: a second money-moving request must wait.
            return self._outcome(Status.REFUSED, "TRANSACTION NOT SENT: A REVERSAL IS PENDING")
        txn, message = self.journal.begin(
            plan.kind,
            plan.build,
            plan.pan,
            self._now_ms,
            original_stan=plan.original_stan,
            original_batch=plan.original_batch,
            original_rrn=plan.original_rrn,
        )
        verdict = yield from self._exchange(message, profile)
        if not verdict.ok or verdict.message is None:
            return self._failed(txn, verdict)
        txn = self.journal.finish(
            txn.id,
            verdict.message,
            self._now_ms,
            host_at=self._host_at(verdict.message),
            balance_minor=_balance_of(verdict.message),
        )
        return self._answered(txn, profile, paper_out=plan.paper_out)

    def _failed(self, txn: JournalTxn, verdict: Verdict) -> Outcome:
        reason = verdict.reason or REASON_NO_ANSWER
        txn = self.journal.fail(txn.id, reason, self._now_ms, verdict.why)
        if txn.state is TxnState.NO_ANSWER:
            return self._outcome(
                Status.NO_ANSWER, "NO VALID ANSWER FROM HOST", f"({verdict.why})", txn=txn
            )
        return self._outcome(
            Status.REVERSAL_PENDING,
            "TRANSACTION FAILED",
            f"({verdict.why})",
            f"REVERSAL PENDING (REASON {reason}): IT GOES FIRST ON THE NEXT TRANSACTION",
            "DO NOT HAND OVER GOODS; NO RECEIPT",
            txn=txn,
            code=reason,
        )

    def _answered(self, txn: JournalTxn, profile: Profile, *, paper_out: bool) -> Outcome:
        header = self._header(profile)
        code = txn.response_code or ""
        if not txn.approved:
            lines = [f"DECLINED {code}: {describe(code).meaning.upper()}"]
            if code == rc.MAC_ERROR:
                lines.append("SIGN ON AGAIN")
            return self._outcome(
                Status.DECLINED,
                *lines,
                printout=(slips.decline_slip(header, txn),),
                txn=txn,
                code=code,
            )
        self._say(*_approval_lines(txn))
        if txn.kind is TxnKind.BALANCE:
            return self._outcome(Status.APPROVED, txn=txn, code=code)
        if paper_out:
            return self._outcome(
                Status.APPROVED,
                "PRINTER OUT OF PAPER: REPRINT THE LAST RECEIPT",
                txn=txn,
                code=code,
            )
        printout = (
            slips.receipt(header, txn, slips.Copy.MERCHANT),
            slips.receipt(header, txn, slips.Copy.CARDHOLDER),
        )
        txn = self.journal.mark_printed(txn.id)
        return self._outcome(Status.APPROVED, printout=printout, txn=txn, code=code)

    def _host_at(self, answer: Message) -> str:
        """The receipt's date and time: the host's 13 and 12, the year from our clock."""
        local = LocalTime.of(self._now_ms)
        mmdd, hhmmss = answer.get(13) or local.mmdd, answer.get(12) or local.hhmmss
        year = int(local.date[:4])
        if mmdd > local.mmdd and mmdd[:2] == "12" and local.mmdd[:2] == "01":
            year -= 1  # answered on 31 December, received on 1 January
        return _display_time(f"{year:04d}{mmdd}", hhmmss)

    # -- what each transaction sends -------------------------------------------------------

    def _plan(self, command: Command, profile: Profile) -> _Plan:
        who, keys = self._who(profile), profile.keys
        pin_key = keys.pin_key if keys else None
        if isinstance(command, Sale | Balance | PreAuth):
            _check_pin(command.card)
        match command:
            case Sale(card, amount, paper_out):
                _check_amount(amount)
                return _Plan(
                    TxnKind.SALE,
                    card.pan,
                    lambda s, b: sale(who, s, b, card=card, amount_minor=amount, pin_key=pin_key),
                    paper_out=paper_out,
                )
            case Balance(card):
                return _Plan(
                    TxnKind.BALANCE,
                    card.pan,
                    lambda s, b: balance_inquiry(who, s, b, card=card, pin_key=pin_key),
                )
            case PreAuth(card, amount, paper_out):
                _check_amount(amount)
                return _Plan(
                    TxnKind.PREAUTH,
                    card.pan,
                    lambda s, b: preauth(
                        who, s, b, card=card, amount_minor=amount, pin_key=pin_key
                    ),
                    paper_out=paper_out,
                )
            case Void():
                return self._void_plan(command, profile)
            case Refund(card, rrn, amount, _, paper_out):
                _check_amount(amount)
                if not (len(rrn) == 12 and rrn.isdigit()):
                    raise RefusedError(f"REF NO MUST BE 12 DIGITS, NOT {rrn!r}")
                return _Plan(
                    TxnKind.REFUND,
                    card.pan,
                    lambda s, b: refund(
                        who, s, b, card=card, original_rrn=rrn, amount_minor=amount
                    ),
                    original_rrn=rrn,
                    paper_out=paper_out,
                )
            case Complete():
                return self._completion_plan(command, profile)
        raise AssertionError(f"not a transaction: {command!r}")

    def _void_plan(self, command: Void, profile: Profile) -> _Plan:
        who = self._who(profile)
        sale_txn = self.journal.txn_by_voucher(profile.batch_no, command.voucher)
        if sale_txn is None or sale_txn.kind is not TxnKind.SALE or not sale_txn.approved:
            raise RefusedError(
                f"NO APPROVED SALE WITH VOUCHER {command.voucher:06d} IN BATCH "
                f"{profile.batch_no:06d}: A VOID IS FOR THE CURRENT BATCH ONLY"
            )
        if sale_txn.voided:
            raise RefusedError(f"VOUCHER {command.voucher:06d} IS ALREADY VOIDED")
        if command.card is not None and command.card.pan.reveal() != sale_txn.pan.reveal():
            raise RefusedError("THIS IS NOT THE CARD OF THE SALE")
        card = command.card or Card(sale_txn.pan, sale_txn.expiry)
        original = Message("0200", sale_txn.request)
        mmdd, _ = _host_date_time(sale_txn)
        answered = Message("0210", {37: sale_txn.rrn or "", 38: sale_txn.auth_code or "", 13: mmdd})
        return _Plan(
            TxnKind.VOID,
            card.pan,
            lambda s, b: void(who, s, b, card=card, original=original, original_answer=answered),
            original_stan=sale_txn.stan,
            original_batch=sale_txn.batch_no,
            paper_out=command.paper_out,
        )

    def _completion_plan(self, command: Complete, profile: Profile) -> _Plan:
        who = self._who(profile)
        batch_no = command.batch_no or profile.batch_no
        hold = self.journal.txn_by_voucher(batch_no, command.voucher)
        if hold is None or hold.kind is not TxnKind.PREAUTH or not hold.approved:
            raise RefusedError(
                f"NO APPROVED PRE-AUTHORISATION WITH VOUCHER {command.voucher:06d} "
                f"IN BATCH {batch_no:06d}"
            )
        if hold.completed:
            raise RefusedError(f"PRE-AUTHORISATION {command.voucher:06d} IS ALREADY COMPLETED")
        amount = hold.amount_minor or 0
        if command.amount_minor is not None:
            amount = command.amount_minor
        _check_amount(amount)
        if amount > (hold.amount_minor or 0):
            raise RefusedError("COMPLETION ABOVE THE HELD AMOUNT")
        card = Card(hold.pan, hold.expiry)
        mmdd, _ = _host_date_time(hold)
        original_61 = original_data(hold.batch_no, hold.stan, mmdd)
        auth_code = hold.auth_code or ""
        return _Plan(
            TxnKind.COMPLETION,
            card.pan,
            lambda s, b: completion(
                who,
                s,
                b,
                card=card,
                amount_minor=amount,
                auth_code=auth_code,
                original_61=original_61,
            ),
            original_stan=hold.stan,
            original_batch=hold.batch_no,
            paper_out=command.paper_out,
        )

    # -- settlement ------------------------------------------------------------------------

    def _settle(self, password: str) -> Flow:
        profile = self.journal.profile()
        self._require_signed_on(profile)
        self._check_admin(password)
        yield from self._reversal_first(profile)  # settlement goes ahead and reports it
        batch_no = profile.batch_no
        txns = self.journal.txns(batch_no)
        totals = batch_totals(txns)
        self.journal.settling(batch_no, totals.field48(), self._now_ms)
        stan = self.journal.take_stan(self._now_ms, "settlement")
        message = settlement(self._who(profile), stan, batch_no, totals.field48())
        verdict = yield from self._exchange(message, profile)
        if not verdict.ok or verdict.message is None:
            return self._outcome(
                Status.NO_ANSWER,
                "SETTLEMENT FAILED: NO VALID ANSWER",
                f"({verdict.why})",
                "THE BATCH STAYS OPEN FOR SETTLEMENT ONLY: SETTLE AGAIN",
            )
        answer = verdict.message
        result = (answer.get(48) or "")[30:31]
        if answer.response_code != rc.APPROVED or result not in ("1", "2"):
            code = answer.response_code or "??"
            return self._outcome(
                Status.DECLINED,
                f"SETTLEMENT REFUSED: {code} {describe(code).meaning.upper()} (RESULT {result!r})",
                "SETTLE AGAIN",
                code=code,
            )
        balanced = result == "1"
        self.journal.settlement_result(
            batch_no,
            "balanced" if balanced else "not_balanced",
            answer.get(48) or "",
            self._host_at(answer),
        )
        if not balanced:
            self._say("NOT BALANCED: UPLOADING THE BATCH")
            done = yield from self._upload(profile, batch_no)
            if not done:
                return self._outcome(
                    Status.NO_ANSWER,
                    "BATCH UPLOAD INTERRUPTED: NO VALID ANSWER",
                    "SETTLE AGAIN TO FINISH IT",
                )
        return self._settled(profile, batch_no, totals)

    def _upload(self, profile: Profile, batch_no: int) -> Generator[Send | Wait, Event, bool]:
        who = self._who(profile)
        records = [
            t
            for t in self.journal.txns(batch_no)
            if t.approved and t.rrn and t.kind is not TxnKind.BALANCE
        ]
        for txn in (t for t in records if not t.uploaded):
            mmdd, hhmmss = _host_date_time(txn)
            message = upload_record(
                who,
                batch_no,
                pan=txn.pan,
                request=txn.request,
                rrn=txn.rrn or "",
                auth_code=txn.auth_code,
                host_mmdd=mmdd,
                host_hhmmss=hhmmss,
            )
            if not _accepted((yield from self._exchange(message, profile))):
                return False
            self.journal.uploaded(txn.id, batch_no)
        stan = self.journal.take_stan(self._now_ms, "batch upload closing")
        closing = upload_closing(who, stan, batch_no, len(records))
        return _accepted((yield from self._exchange(closing, profile)))

    def _settled(self, profile: Profile, batch_no: int, totals: BatchTotals) -> Outcome:
        following = self.journal.close_batch(batch_no, self._now_ms)
        batch = self.journal.batch(batch_no)
        pending = self.journal.pending_reversal()
        slip = slips.settlement_slip(
            self._header(profile),
            batch,
            totals,
            uploaded=batch.uploaded,
            pending=pending,
            printed_at=self._local_now(),
        )
        state = "BALANCED" if batch.result == "balanced" else "NOT BALANCED, BATCH UPLOADED"
        lines = [f"SETTLEMENT OF BATCH {batch_no:06d}: {state}", f"NEW BATCH: {following:06d}"]
        if pending is not None:
            lines.append(f"REVERSAL OF VOUCHER {pending.stan:06d} STILL PENDING: CALL ACQUIRER")
        return self._outcome(
            Status.APPROVED,
            *lines,
            printout=(slip,),
            data={"batch": batch_no, "result": batch.result, "next_batch": following},
        )

    # -- local jobs --------------------------------------------------------------------------

    def _reprint(self, voucher: int | None) -> Outcome:
        profile = self.journal.profile()
        if voucher is None:
            txn = self.journal.last_receipted()
            if txn is None:
                raise RefusedError("NO RECEIPT TO REPRINT")
        else:
            found = self.journal.txn_by_voucher(profile.batch_no, voucher)
            if found is None:
                raise RefusedError(f"NO VOUCHER {voucher:06d} IN BATCH {profile.batch_no:06d}")
            if not found.approved or found.kind is TxnKind.BALANCE:
                raise RefusedError(f"VOUCHER {voucher:06d} HAS NO RECEIPT ({found.state.value})")
            txn = found
        header = self._header(profile)
        printout = tuple(
            slips.receipt(header, txn, copy, reprint=True)
            for copy in (slips.Copy.MERCHANT, slips.Copy.CARDHOLDER)
        )
        txn = self.journal.mark_printed(txn.id)
        return self._outcome(
            Status.DONE, f"REPRINT OF VOUCHER {txn.voucher}", printout=printout, txn=txn
        )

    def _detail(self, batch_no: int | None) -> Outcome:
        profile = self.journal.profile()
        number = batch_no or profile.batch_no
        txns = self.journal.txns(number)
        listing = slips.detail_list(self._header(profile), number, txns, self._local_now())
        totals = batch_totals(txns)
        return self._outcome(
            Status.DONE,
            f"DETAIL LIST OF BATCH {number:06d}",
            printout=(listing,),
            data={"batch": number, "totals_field48": totals.field48()},
        )

    def _tamper(self) -> Outcome:
        state = self.journal.protection()
        locked = ProtectionState(
            Protection.LOCKED, "TAMPER SIGNAL", self._now_ms, state.admin_failures
        )
        self.journal.set_protection(locked, self._now_ms)
        return self._outcome(Status.DONE, "TAMPER DETECTED: TERMINAL LOCKED (PROTECTION MODE)")

    def _unlock(self, password: str) -> Outcome:
        state = self.journal.protection()
        if not state.locked:
            return self._outcome(Status.DONE, "TERMINAL IS NOT LOCKED")
        _, unlock_hash = self.journal.password_hashes()
        if not verify_password(password, unlock_hash):
            self.journal.log_event(self._now_ms, "protection.unlock_refused", {})
            return self._outcome(Status.REFUSED, "WRONG UNLOCK PASSWORD: TERMINAL STAYS LOCKED")
        self.journal.set_protection(ProtectionState(Protection.OFF), self._now_ms)
        return self._outcome(Status.DONE, "TERMINAL UNLOCKED")


@dataclass(frozen=True, slots=True)
class _Plan:
    """A transaction about to be journalled: its kind, card, and how to build the request
    once the journal has given it a STAN and batch."""

    kind: TxnKind
    pan: Pan
    build: Callable[[int, int], Message]
    original_stan: int | None = None
    original_batch: int | None = None
    original_rrn: str | None = None
    paper_out: bool = False


def _check_pin(card: Card) -> None:
    """ISO 9564 format 0 takes 4 to 12 digits; anything else never leaves the PIN pad."""
    if card.pin is not None and not (4 <= len(card.pin) <= 12 and card.pin.isdigit()):
        raise RefusedError("PIN MUST BE 4 TO 12 DIGITS")


def _accepted(verdict: Verdict) -> bool:
    """An upload record or closing counts as delivered only when the host answers 00."""
    return verdict.ok and verdict.message is not None and verdict.message.response_code == "00"


def _check_amount(amount_minor: int) -> None:
    if not 0 < amount_minor <= 999_999_999_999:
        raise RefusedError("AMOUNT MUST BE ABOVE ZERO AND FIT 12 DIGITS")


def _balance_of(answer: Message) -> int | None:
    """Field 54: account type, amount type, currency, sign, n12 (wire profile 5.5)."""
    text = answer.get(54)
    if answer.response_code != rc.APPROVED or text is None or len(text) < 20:
        return None
    sign, digits = text[7], text[8:20]
    if not digits.isdigit() or sign not in "CD":
        return None
    return int(digits) if sign == "C" else -int(digits)


def _approval_lines(txn: JournalTxn) -> list[str]:
    lines = ["APPROVED"]
    if txn.kind is TxnKind.BALANCE:
        if txn.balance_minor is not None:
            lines.append(f"AVAILABLE BALANCE: {Money(txn.balance_minor, txn.currency)}")
        return lines
    sign = -1 if txn.is_credit else 1
    lines.append(f"{txn.kind.value.upper()} {Money(sign * (txn.amount_minor or 0), txn.currency)}")
    lines.append(f"VOUCHER NO: {txn.voucher}  REF NO: {txn.rrn}")
    if txn.auth_code:
        lines.append(f"AUTH NO: {txn.auth_code}")
    return lines


def _host_date_time(txn: JournalTxn) -> tuple[str, str]:
    """Fields 13 and 12 (MMDD, hhmmss) of the host's answer, back from the journalled
    "YYYY/MM/DD HH:MM:SS" (_display_time); zeros for a transaction never answered."""
    digits = (txn.host_at or "0000/00/00 00:00:00").replace("/", "").replace(":", "")
    return digits[4:8], digits[9:15]


def _display_time(yyyymmdd: str, hhmmss: str) -> str:
    return (
        f"{yyyymmdd[:4]}/{yyyymmdd[4:6]}/{yyyymmdd[6:8]} {hhmmss[:2]}:{hhmmss[2:4]}:{hhmmss[4:6]}"
    )
