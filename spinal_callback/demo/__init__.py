"""Runnable DPO demos for spinal-callback: a locally generated addition task, a tiny Llama and
two recipes (TRL's ``DPOTrainer`` and a plain LightningModule) with the callback attached.

Nothing here downloads anything unless you pass ``--model`` / ``--dataset`` with a Hub name.
Entry points: ``spinal demo`` (TRL), ``python recipes/trl_dpo.py``, ``python recipes/lightning_dpo.py``.
Submodules import transformers/TRL/Lightning; this package file imports nothing.
"""
