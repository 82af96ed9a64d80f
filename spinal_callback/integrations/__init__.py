"""Thin adapters from training frameworks to :class:`spinal_callback.SpinalMonitor`.

Each submodule imports its framework; this package imports none.
"""
