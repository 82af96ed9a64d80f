"""DPO with TRL's DPOTrainer and the spinal callback, on a tiny built-in model (no download).

Usage::

    python recipes/trl_dpo.py                      # ~1 minute on 2 CPU cores; cached: ~20 s
    python recipes/trl_dpo.py --peft               # LoRA; the reference is the adapter-disabled policy
    python recipes/trl_dpo.py --model PATH --dataset pairs.jsonl --max-steps 200
    python recipes/trl_dpo.py --help

The callback is one line (see ``spinal_callback/demo/trl_recipe.py``)::

    trainer = DPOTrainer(..., callbacks=[SpinalTrainerCallback(SpinalConfig(interval=10))])
"""

import sys
from pathlib import Path

try:
    from spinal_callback.demo.trl_recipe import main
except ModuleNotFoundError as err:  # a source checkout without `pip install -e .`
    if err.name != "spinal_callback":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from spinal_callback.demo.trl_recipe import main

if __name__ == "__main__":
    raise SystemExit(main())
