"""``cardtally demo`` and ``cardtally init --sample``: the sample network and its business day.

:func:`create_sample_home` builds the network; :func:`run_demo` runs a day over real TCP with
injected faults and reads the tally from the databases (:class:`Tally`).
"""

from cardtally.demo._run import DemoOptions, DemoResult, DemoUi, run_demo
from cardtally.demo._sample import Ports, SampleNetwork, SampleSize, create_sample_home, free_port
from cardtally.demo._tally import Check, Tally

__all__ = [
    "Check",
    "DemoOptions",
    "DemoResult",
    "DemoUi",
    "Ports",
    "SampleNetwork",
    "SampleSize",
    "Tally",
    "create_sample_home",
    "free_port",
    "run_demo",
]
