"""Configuration: the validated dataclasses both callbacks take, and the checks they share.

:class:`SpinalConfig` holds everything; its ``detector`` and ``rollback`` fields are a
:class:`DetectorConfig` and a :class:`RollbackConfig`. :class:`SpinalArguments` is the same configuration
for command-line parsers (``HfArgumentParser``, ``TrlParser``), every field ``name`` as ``--spinal_name``.
Nothing here imports torch.
"""

from spinal_callback.config.arguments import SpinalArguments, cli_name
from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.options import ALERT_ACTIONS, PATCH_DIRECTIONS
from spinal_callback.config.rollback import RollbackConfig
from spinal_callback.config.spinal import SpinalConfig

__all__ = [
    "ALERT_ACTIONS",
    "PATCH_DIRECTIONS",
    "DetectorConfig",
    "RollbackConfig",
    "SpinalArguments",
    "SpinalConfig",
    "cli_name",
]
