"""The ``spinal`` command line and what it runs: ``demo``, ``audit`` and ``report``.

Tools sit above the library: nothing in the core imports them.
"""
