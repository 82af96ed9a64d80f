"""``SpinalArguments``: :class:`SpinalConfig` for command-line parsers (``HfArgumentParser``, ``TrlParser``).

``SpinalConfig`` is the Python API; its field types (tuples, callables, nested configs) are not what an
argparse-based parser can fill, and its ``max_length`` and ``seed`` clash with ``DPOConfig``'s. So the
parsers get this dataclass, generated from ``SpinalConfig``'s fields — same defaults, same help — where
every field ``name`` is the option ``--spinal_name`` (also ``--spinal-name``)::

    from trl import DPOConfig, TrlParser
    from spinal_callback import SpinalArguments

    dpo_config, spinal_args = TrlParser((DPOConfig, SpinalArguments)).parse_args_and_config()
    callback = SpinalTrainerCallback(spinal_args.to_config())

    python train.py --max_length 1024 --spinal_max_length 256 --spinal_on_alert log rollback \\
        --spinal_detector detector.json --spinal_rollback '{"snapshot_interval": 50}'

What the options take:

- lists — ``on_alert``, ``patch_directions``, ``patch_ranks``, ``tail``, ``bands``: values after one option
  (``--spinal_on_alert log rollback``, ``--spinal_tail 0.1 0.9``);
- ``detector`` and ``rollback``: a JSON object (``'{"window": 30}'``) or the path of a JSON file of their
  fields (``spinal calibrate`` writes one for the detector); in a ``TrlParser --config`` YAML file also a
  mapping;
- ``probe_pairs``: a JSON list of ``{"prompt", "chosen", "rejected"}`` objects, or the path of a ``.json`` /
  ``.jsonl`` file of them; in YAML also a list;
- booleans: ``--spinal_strict``, ``--spinal_heatmaps false`` or ``--no_spinal_heatmaps``.

The values are validated when the parser builds the dataclass: a bad one raises ``ValueError`` naming the
option. Nothing here imports transformers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import MISSING, field, fields, make_dataclass
from typing import Any, get_type_hints

from spinal_callback.config.options import ALERT_ACTIONS, PATCH_DIRECTIONS
from spinal_callback.config.spinal import SpinalConfig

__all__ = ["CLI_PREFIX", "SpinalArguments", "cli_name"]

#: Prefix of every ``SpinalConfig`` field on the command line.
CLI_PREFIX = "spinal_"

#: Fields whose command-line form differs from their Python type: (type, default, help added, choices).
_CLI_FORMS: dict[str, tuple[Any, Any, str, tuple[str, ...] | None]] = {
    "probe_pairs": (
        str | None,
        None,
        "On the command line: a JSON list of such objects, or the path of a .json / .jsonl file of them.",
        None,
    ),
    "patch_directions": (list[str], list, "On the command line: one or both names after the option.", PATCH_DIRECTIONS),
    "patch_ranks": (list[int] | None, None, "On the command line: the numbers after the option.", None),
    "on_alert": (
        list[str],
        list,
        "On the command line: one or more of log, stop, rollback after the option (callables only from Python).",
        ALERT_ACTIONS,
    ),
    "detector": (
        str | None,
        None,
        "On the command line: a JSON object of DetectorConfig fields or the path of "
        "a JSON file (default: the shipped detector).",
        None,
    ),
    "rollback": (
        str | None,
        None,
        "On the command line: a JSON object of RollbackConfig fields or the path of "
        "a JSON file (default: RollbackConfig()).",
        None,
    ),
    "tail": (list[float], list, "On the command line: two numbers, a b.", None),
    "bands": (list[float], list, "On the command line: two numbers, a b.", None),
}


def cli_name(name: str) -> str:
    """The command-line option of ``SpinalConfig`` field ``name`` (``"max_length"`` → ``"--spinal_max_length"``)."""
    return f"--{CLI_PREFIX}{name}"


def _cli_field(name: str, annotation: Any, spec: Any) -> tuple[str, Any, Any]:
    help_text = spec.metadata.get("help", "")
    default = spec.default if spec.default is not MISSING else spec.default_factory()
    if name not in _CLI_FORMS:
        return CLI_PREFIX + name, annotation, field(default=default, metadata={"help": help_text})
    cli_type, kind, extra, choices = _CLI_FORMS[name]
    metadata: dict[str, Any] = {"help": f"{help_text} {extra}"}
    if choices is not None:
        metadata["choices"] = choices
    if kind is list:
        initial = list(default)
        return CLI_PREFIX + name, cli_type, field(default_factory=lambda: list(initial), metadata=metadata)
    return CLI_PREFIX + name, cli_type, field(default=None, metadata=metadata)


def _load_pairs(value: object) -> object:
    """``probe_pairs`` from the command line: JSON text or a .json / .jsonl file; anything else as given."""
    if not isinstance(value, str):
        return value
    option = cli_name("probe_pairs")
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{option} is not a valid JSON list ({err.msg}): {value[:80]!r}") from None
    if not os.path.isfile(value):
        raise ValueError(
            f"{option} {value!r} is neither a JSON list nor a file; give a JSON list of "
            '{"prompt", "chosen", "rejected"} objects or the path of a .json / .jsonl file'
        )
    with open(value, encoding="utf-8") as handle:
        try:
            if value.endswith(".jsonl"):
                return [json.loads(line) for line in handle if line.strip()]
            return json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{option} {value!r} is not valid JSON ({err.msg}, line {err.lineno})") from None


def _post_init(self: Any) -> None:
    kwargs = {spec.name: getattr(self, CLI_PREFIX + spec.name) for spec in fields(SpinalConfig)}
    for name in ("detector", "rollback"):
        if kwargs[name] is None:
            del kwargs[name]
    try:
        kwargs["probe_pairs"] = _load_pairs(kwargs["probe_pairs"])
        config = SpinalConfig(**kwargs)
    except ValueError as err:
        names = [n.split(".")[0].split("[")[0] for n in re.findall(r"`([^`]+)`", str(err))]
        known = [n for n in names if n in kwargs]
        where = f" (command-line option {cli_name(known[0])})" if known else ""
        raise ValueError(f"{err}{where}") from None
    object.__setattr__(self, "_config", config)


def _to_config(self: Any) -> SpinalConfig:
    """The validated :class:`SpinalConfig` these arguments describe."""
    config: SpinalConfig = self._config
    return config


def _build() -> type:
    hints = get_type_hints(SpinalConfig)
    return make_dataclass(
        "SpinalArguments",
        [_cli_field(spec.name, hints[spec.name], spec) for spec in fields(SpinalConfig)],
        namespace={
            "__doc__": "SpinalConfig as command-line arguments: field `name` is `--spinal_name` (see the module "
            "docstring of spinal_callback.config.arguments). `to_config()` gives the SpinalConfig.",
            "__post_init__": _post_init,
            "to_config": _to_config,
            "_argument_group_name": "spinal-callback (SpinalConfig field NAME is --spinal_NAME)",
            "__module__": __name__,
        },
    )


#: ``SpinalConfig`` for ``HfArgumentParser`` / ``TrlParser``: every field ``name`` as ``spinal_name``.
SpinalArguments: type = _build()
