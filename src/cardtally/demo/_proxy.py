"""A frame-aware TCP fault proxy between two parties: the tests' and the demo's.

It listens on 127.0.0.1 (a free port) and, for each client connection, opens one upstream
connection to the switch and forwards whole frames (2-byte big-endian length, TPDU, ISO
8583 message) both ways. The test thread sets rules that swallow frames by MTI:

- :meth:`FaultProxy.drop_requests` swallows the next ``count`` terminal -> switch frames
  whose MTI starts with a prefix (the switch never sees them);
- :meth:`FaultProxy.drop_answers` swallows the next ``count`` switch -> terminal frames
  whose MTI starts with a prefix (the switch did the work; the terminal never hears of it);
- :meth:`FaultProxy.hold_answers` swallows every answer until :meth:`FaultProxy.release_answers`,
  which either forgets the held answers or, with ``deliver=True``, sends them on late (to
  the connection they belong to, if it is still open);
- :meth:`FaultProxy.rewrite_requests` changes the next ``count`` client -> upstream frames
  whose MTI starts with a prefix before passing them on (a field tampered with in transit;
  the TPDU is kept, the message re-encoded).

The proxy works on any link with this framing: between a switch and an issuer, the switch is
the client ("requests" go to the issuer, "answers" come back).

``cardtally demo`` adds faults at random and on cue (:class:`Chances`, :meth:`slow_answers`,
:meth:`block_requests`, :meth:`power_off_at_answer`): an answer lost, the link cut instead of
an answer passing, every answer late for a while (a slow issuer), requests of some kinds
swallowed until further notice, and the answer to one terminal swallowed so that the demo can
switch that terminal off while it waits. What it injected is counted in :attr:`injected`.

It records the MTI of every frame it saw in each direction (swallowed ones included), so a
test can say what reached the proxy and in which order.

One thread accepts; one thread per connection pumps both sockets with ``select``. Every loop
wakes at least every :data:`POLL_S` to notice :meth:`FaultProxy.close`, which stops and joins
all of them (bounded) and closes every socket it opened.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Final, Self

from cardtally.wire import (
    TPDU_BYTES,
    FrameDecoder,
    Message,
    WireError,
    decode_message,
    encode_message,
)

HOST: Final = "127.0.0.1"
POLL_S: Final = 0.05
CONNECT_TIMEOUT_S: Final = 5.0
JOIN_TIMEOUT_S: Final = 5.0
_READ_BYTES: Final = 65_536
#: The MTI recorded for a frame whose message does not decode.
UNDECODABLE: Final = "????"

TO_SWITCH: Final = "request"
TO_TERMINAL: Final = "answer"


#: What :attr:`FaultProxy.injected` counts.
LOST: Final = "answer lost"
CUT: Final = "link cut"
DELAYED: Final = "answer late"
BLOCKED: Final = "request swallowed"
POWER_OFF: Final = "answer to a terminal switched off"


@dataclass(frozen=True, slots=True)
class Chances:
    """Odds, per answer whose MTI is in ``answers``, of a fault the proxy injects at random."""

    lose_answer: float = 0.0
    cut_link: float = 0.0
    answers: tuple[str, ...] = ("0210", "0110", "0230")
    seed: int = 0

    def __post_init__(self) -> None:
        for odds in (self.lose_answer, self.cut_link):
            if not 0.0 <= odds <= 1.0:
                raise ValueError(f"odds must be in [0, 1], got {odds}")


class _Action(Enum):
    FORWARD = "forward"
    DROP = "drop"
    CUT = "cut"
    DELAY = "delay"


@dataclass
class _Rule:
    mti_prefix: str
    left: int


@dataclass
class _Rewrite:
    mti_prefix: str
    left: int
    change: Callable[[Message], Message]


def _decoded(body: bytes) -> Message | None:
    try:
        return decode_message(body[TPDU_BYTES:])
    except (WireError, ValueError):
        return None


def _mti_of(body: bytes) -> str:
    message = _decoded(body)
    return UNDECODABLE if message is None else message.mti


class FaultProxy:
    """See the module docstring. Use as a context manager; :attr:`port` is where to connect."""

    def __init__(
        self, upstream_port: int, upstream_host: str = HOST, *, chances: Chances | None = None
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._chances = chances or Chances()
        self._random = random.Random(self._chances.seed)
        self._slow_until = 0.0
        self._slow_s = 0.0
        self._blocked: tuple[str, ...] = ()
        self._power_off: dict[str, threading.Event] = {}
        self._delayed: dict[int, list[tuple[float, bytes]]] = {}
        #: How many of each fault this proxy injected (see the module docstring).
        self.injected: Counter[str] = Counter()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._drop_requests: list[_Rule] = []
        self._drop_answers: list[_Rule] = []
        self._rewrites: list[_Rewrite] = []
        self._holding = False
        self._deliver_held = False
        self._held: dict[int, list[bytes]] = {}
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._errors: list[str] = []
        #: MTIs of terminal -> switch frames, in arrival order (swallowed ones included).
        self.seen_requests: list[str] = []
        #: MTIs of switch -> terminal frames, in arrival order (swallowed ones included).
        self.seen_answers: list[str] = []
        #: (direction, MTI) of every frame swallowed, in order.
        self.dropped: list[tuple[str, str]] = []
        #: MTIs of the client -> upstream frames a rewrite rule changed, in order.
        self.rewritten: list[str] = []
        self.connections = 0
        self.port = 0

    # -- life --------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(16)
        listener.settimeout(POLL_S)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(check=exc is None)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def close(self, *, check: bool = True) -> None:
        """Stop accepting and pumping, join every thread (bounded), close every socket.

        With ``check``, fail if a thread outlived its bound or a pump met a broken frame.
        """
        self._stop.set()
        for thread in list(self._threads):
            thread.join(JOIN_TIMEOUT_S)
        alive = [t.name for t in self._threads if t.is_alive()]
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if check:
            assert not alive, f"proxy threads did not stop: {alive}"
            assert not self._errors, f"proxy errors: {self._errors}"

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- rules, set from the test thread ---------------------------------------------------

    def drop_requests(self, mti_prefix: str, count: int = 1) -> None:
        """Swallow the next ``count`` terminal -> switch frames whose MTI starts so."""
        assert count > 0
        with self._lock:
            self._drop_requests.append(_Rule(mti_prefix, count))

    def drop_answers(self, mti_prefix: str, count: int = 1) -> None:
        """Swallow the next ``count`` switch -> terminal frames whose MTI starts so."""
        assert count > 0
        with self._lock:
            self._drop_answers.append(_Rule(mti_prefix, count))

    def rewrite_requests(
        self, mti_prefix: str, change: Callable[[Message], Message], count: int = 1
    ) -> None:
        """Pass the next ``count`` client -> upstream frames whose MTI starts so as
        ``change(message)``, re-encoded behind the same TPDU (a frame a drop rule swallows is
        not rewritten)."""
        assert count > 0
        with self._lock:
            self._rewrites.append(_Rewrite(mti_prefix, count, change))

    def hold_answers(self) -> None:
        """Swallow every switch -> terminal frame until :meth:`release_answers`."""
        with self._lock:
            self._holding = True
            self._deliver_held = False

    def release_answers(self, *, deliver: bool = False) -> None:
        """Stop holding; with ``deliver``, send the held answers on now, else forget them."""
        with self._lock:
            self._holding = False
            self._deliver_held = deliver
            if not deliver:
                self._held.clear()

    def set_chances(self, chances: Chances) -> None:
        """New odds for the random faults from now on (``Chances()``: none)."""
        with self._lock:
            self._chances = chances
            self._random = random.Random(chances.seed)

    def slow_answers(self, *, delay_ms: int, for_ms: int) -> None:
        """Hold every answer ``delay_ms`` before passing it on, for the next ``for_ms``."""
        with self._lock:
            self._slow_until = time.monotonic() + for_ms / 1000
            self._slow_s = delay_ms / 1000

    def block_requests(self, *mti_prefixes: str) -> None:
        """Swallow every client -> upstream frame whose MTI starts so, until called again
        (with no prefix: swallow none)."""
        with self._lock:
            self._blocked = mti_prefixes

    def power_off_at_answer(self, terminal_id: str) -> threading.Event:
        """Swallow the next answer to ``terminal_id`` (field 41); the event is set when it
        arrives, the moment to switch that terminal off."""
        arrived = threading.Event()
        with self._lock:
            self._power_off[terminal_id] = arrived
        return arrived

    def cancel_power_off(self, terminal_id: str) -> None:
        """Forget a :meth:`power_off_at_answer` rule whose answer never came."""
        with self._lock:
            self._power_off.pop(terminal_id, None)

    def clear_rules(self) -> None:
        with self._lock:
            self._drop_requests.clear()
            self._drop_answers.clear()
            self._rewrites.clear()
            self._holding = False
            self._held.clear()
            self._blocked = ()
            self._slow_until = 0.0
            self._power_off.clear()

    def pending_drops(self) -> int:
        """Frames the drop rules still mean to swallow."""
        with self._lock:
            return sum(r.left for r in (*self._drop_requests, *self._drop_answers))

    # -- what it saw -------------------------------------------------------------------------

    def wait_for_request(self, mti: str, timeout_s: float, count: int = 1) -> None:
        """Wait (bounded) until ``count`` terminal -> switch frames with ``mti`` were seen."""
        self._wait_for(self.seen_requests, mti, timeout_s, count)

    def wait_for_answer(self, mti: str, timeout_s: float, count: int = 1) -> None:
        """Wait (bounded) until ``count`` switch -> terminal frames with ``mti`` were seen."""
        self._wait_for(self.seen_answers, mti, timeout_s, count)

    def _wait_for(self, seen: list[str], mti: str, timeout_s: float, count: int) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while seen.count(mti) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"proxy saw no {mti} x{count} within {timeout_s} s: {seen}"
                    )
                self._lock.wait(min(left, POLL_S))

    def requests_since(self, start: int) -> list[str]:
        with self._lock:
            return self.seen_requests[start:]

    # -- the threads -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._stop.is_set():
                    self._errors.append(f"accept: {exc}")
                return
            client.setblocking(True)
            try:
                upstream = socket.create_connection(self._upstream, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                client.close()  # the switch is down: so is the link through us
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                number = self.connections
            self._spawn(self._pump, f"proxy-conn-{number}", number, client, upstream)

    def _pump(self, number: int, client: socket.socket, upstream: socket.socket) -> None:
        decoders = {client: FrameDecoder(), upstream: FrameDecoder()}
        peer = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                for frame in self._released(number):
                    client.sendall(frame)
                readable, _, _ = select.select([client, upstream], [], [], self._wait_s(number))
                for sock in readable:
                    data = sock.recv(_READ_BYTES)
                    if not data:
                        return  # one side closed: the link through us ends
                    for body in decoders[sock].feed(data):
                        frame = len(body).to_bytes(2, "big") + body
                        action = self._forward(number, frame, body, to_switch=sock is client)
                        if action is _Action.CUT:
                            return  # the finally below closes both sides
                        if action is _Action.FORWARD:
                            if sock is client:
                                frame = self._rewritten(frame, body)
                            peer[sock].sendall(frame)
        except OSError:
            return  # a side reset the link: so does the link through us
        except WireError as exc:  # a frame too large: the stream is out of step
            self._errors.append(f"framing: {exc}")
        finally:
            client.close()
            upstream.close()

    def _released(self, number: int) -> list[bytes]:
        """Held answers to send now: all of them once released, else late ones now due."""
        with self._lock:
            due = self._due(number)
            if not self._deliver_held:
                return due
            return self._held.pop(number, []) + due

    def _due(self, number: int) -> list[bytes]:
        late = self._delayed.get(number)
        if not late:
            return []
        now = time.monotonic()
        ready = [frame for at, frame in late if at <= now]
        self._delayed[number] = [(at, frame) for at, frame in late if at > now]
        return ready

    def _wait_s(self, number: int) -> float:
        with self._lock:
            late = self._delayed.get(number)
            if not late:
                return POLL_S
            return max(0.0, min(POLL_S, min(at for at, _ in late) - time.monotonic()))

    def _forward(self, number: int, frame: bytes, body: bytes, *, to_switch: bool) -> _Action:
        """Record the frame and say what becomes of it (rules first, then chance)."""
        message = _decoded(body)
        mti = UNDECODABLE if message is None else message.mti
        with self._lock:
            if to_switch:
                self.seen_requests.append(mti)
                action = self._request_action(mti)
            else:
                self.seen_answers.append(mti)
                action = self._answer_action(number, frame, message, mti)
            if action is _Action.DROP:
                self.dropped.append((TO_SWITCH if to_switch else TO_TERMINAL, mti))
            self._lock.notify_all()
        return action

    def _request_action(self, mti: str) -> _Action:
        if _take(self._drop_requests, mti):
            return _Action.DROP
        if any(mti.startswith(prefix) for prefix in self._blocked):
            self.injected[BLOCKED] += 1
            return _Action.DROP
        return _Action.FORWARD

    def _answer_action(
        self, number: int, frame: bytes, message: Message | None, mti: str
    ) -> _Action:
        if self._holding:
            self._held.setdefault(number, []).append(frame)
            return _Action.DROP
        if _take(self._drop_answers, mti):
            return _Action.DROP
        arrived = self._power_off.pop(str(message.get(41)), None) if message else None
        if arrived is not None:
            self.injected[POWER_OFF] += 1
            arrived.set()
            return _Action.DROP
        return self._chance_action(number, frame, mti)

    def _chance_action(self, number: int, frame: bytes, mti: str) -> _Action:
        now = time.monotonic()
        if now < self._slow_until:
            self.injected[DELAYED] += 1
            self._delayed.setdefault(number, []).append((now + self._slow_s, frame))
            return _Action.DELAY
        if mti not in self._chances.answers:
            return _Action.FORWARD
        roll = self._random.random()
        if roll < self._chances.lose_answer:
            self.injected[LOST] += 1
            return _Action.DROP
        if roll < self._chances.lose_answer + self._chances.cut_link:
            self.injected[CUT] += 1
            return _Action.CUT
        return _Action.FORWARD

    def _rewritten(self, frame: bytes, body: bytes) -> bytes:
        """The client -> upstream frame as a rewrite rule wants it (unchanged if none)."""
        mti = _mti_of(body)
        with self._lock:
            rule = next(
                (r for r in self._rewrites if r.left > 0 and mti.startswith(r.mti_prefix)), None
            )
            if rule is None:
                return frame
            rule.left -= 1
            self.rewritten.append(mti)
            self._lock.notify_all()
        changed = body[:TPDU_BYTES] + encode_message(rule.change(decode_message(body[TPDU_BYTES:])))
        return len(changed).to_bytes(2, "big") + changed


def _take(rules: list[_Rule], mti: str) -> bool:
    for rule in rules:
        if rule.left > 0 and mti.startswith(rule.mti_prefix):
            rule.left -= 1
            return True
    return False
