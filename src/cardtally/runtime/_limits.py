"""The bounds a frame server keeps; every queue and wait in the runtime has one."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Limits of one :class:`~cardtally.runtime.FrameServer`.

    ``in_flight_per_connection_max`` is backpressure, not buffering: a connection with that
    many requests awaiting replies is not read again until one is answered, so a fast sender
    fills its own TCP window instead of the server's memory.
    """

    connections_max: int = 256
    in_flight_per_connection_max: int = 32
    queue_depth_max: int = 4096
    batch_size_max: int = 128
    tick_interval_ms: int = 1000
    drain_timeout_ms: int = 5000
    idle_timeout_ms: int = 300_000
    write_timeout_ms: int = 5000

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            # bool is an int to Python, but True connections is a typo, not a limit.
            if type(value) is not int or value < 1:
                raise ValueError(f"{spec.name} must be a positive int, got {value!r}")
        if self.batch_size_max > self.queue_depth_max:
            raise ValueError(
                f"batch_size_max ({self.batch_size_max}) cannot exceed "
                f"queue_depth_max ({self.queue_depth_max})"
            )
