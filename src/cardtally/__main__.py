"""``python -m cardtally`` is the same as the ``cardtally`` command."""

from cardtally.cli.main import run

run()
