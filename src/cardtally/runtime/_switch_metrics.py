"""The switch's store-and-forward queue as gauges: read on the lane on a timer, reported at scrape.

The queue lives in the database, and a SQLite reader there takes the write lock (every
transaction begins IMMEDIATE), so a scrape must not read it: the switch reads it on its own
commit lane every :data:`QUEUE_READ_MS` (two indexed aggregates over the unacknowledged rows,
well under a millisecond with a short queue) and the scrape reports the last reading. The age
of the oldest advice is computed at scrape time from its creation time, so it keeps growing
between readings as it does in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import sqlalchemy as sa
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from cardtally.storage import transaction
from cardtally.switch._model import TxnState
from cardtally.switch._schema import advice_table, txn_table

#: How often the queue is read while a metrics endpoint is up: a gauge lags at most this.
QUEUE_READ_MS: Final = 1000
#: Transactions whose undoing is still on its way to the issuer.
REVERSAL_STATES: Final = (TxnState.TIMED_OUT.value, TxnState.REVERSAL_PENDING.value)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """Unacknowledged reversal advices per issuer link, and transactions awaiting reversal."""

    #: link id -> (advices unacknowledged, creation time of the oldest, ms since 1970)
    by_link: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: switch transaction state -> how many are in it (only :data:`REVERSAL_STATES`)
    reversals: Mapping[str, int] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return sum(depth for depth, _ in self.by_link.values())

    def oldest_age_ms(self, now_ms: int) -> int:
        """Age of the oldest unacknowledged advice on any link; 0 for an empty queue."""
        oldest = [created for depth, created in self.by_link.values() if depth]
        return max(0, now_ms - min(oldest)) if oldest else 0


def read_queue(engine: Engine) -> QueueSnapshot:
    """One reading of the queue; call it on the switch's commit lane."""
    pending = advice_table.c.acked_at_ms.is_(None)
    links = (
        sa.select(
            advice_table.c.link_id,
            sa.func.count(),
            sa.func.min(advice_table.c.created_at_ms),
        )
        .where(pending)
        .group_by(advice_table.c.link_id)
    )
    states = (
        sa.select(txn_table.c.state, sa.func.count())
        .where(txn_table.c.state.in_(REVERSAL_STATES))
        .group_by(txn_table.c.state)
    )
    with transaction(engine) as conn:
        by_link = {str(link): (int(n), int(oldest)) for link, n, oldest in conn.execute(links)}
        reversals = {str(state): int(n) for state, n in conn.execute(states)}
    return QueueSnapshot(by_link, reversals)


@dataclass(frozen=True, slots=True)
class SwitchGauges:
    """Builds the switch's gauges from what the shell holds in memory (see module docstring).

    ``snapshot`` returns the last queue reading; ``links_up`` the issuer links by name and
    whether each is connected; ``now_ms`` the wall clock.
    """

    snapshot: Callable[[], QueueSnapshot]
    links_up: Callable[[], Mapping[str, bool]]
    now_ms: Callable[[], int]

    def collect(self) -> Iterator[Metric]:
        reading, links = self.snapshot(), self.links_up()
        depth = GaugeMetricFamily(
            "cardtally_switch_advice_queue_depth",
            "Reversal advices stored and not yet acknowledged by the issuer, per issuer link",
            labels=["link"],
        )
        age = GaugeMetricFamily(
            "cardtally_switch_advice_queue_oldest_age_seconds",
            "Age of the oldest unacknowledged reversal advice, per issuer link (0: none)",
            labels=["link"],
        )
        now_ms = self.now_ms()
        for link in sorted(set(links) | set(reading.by_link)):
            count, created_ms = reading.by_link.get(link, (0, now_ms))
            depth.add_metric([link], count)
            age.add_metric([link], max(0, now_ms - created_ms) / 1000 if count else 0.0)
        yield depth
        yield age
        yield self._reversals(reading)
        up = GaugeMetricFamily(
            "cardtally_switch_issuer_link_up",
            "1 while the switch is connected to the issuer link, else 0",
            labels=["link"],
        )
        for link, connected in sorted(links.items()):
            up.add_metric([link], 1 if connected else 0)
        yield up

    @staticmethod
    def _reversals(reading: QueueSnapshot) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "cardtally_switch_reversals_pending",
            "Switch transactions whose reversal is queued and not yet acknowledged, by state",
            labels=["state"],
        )
        for state in REVERSAL_STATES:
            family.add_metric([state], reading.reversals.get(state, 0))
        return family
