"""What ``cardtally demo`` runs."""

from cardtally.demo._foundation import DemoResult, Step, run_foundation_demo

__all__ = ["DemoResult", "Step", "run_foundation_demo"]
