"""The framework-neutral monitor: probe schedule, probe runs, the alert pipeline and the outputs."""

from spinal_callback.monitor.monitor import SpinalMonitor

__all__ = ["SpinalMonitor"]
