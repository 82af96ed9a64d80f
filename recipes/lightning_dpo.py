"""DPO with a plain LightningModule and the spinal callback, on a tiny built-in model (no download).

Usage::

    python recipes/lightning_dpo.py                # ~1 minute on 2 CPU cores; cached: ~20 s
    python recipes/lightning_dpo.py --model PATH --dataset pairs.jsonl --max-steps 200
    python recipes/lightning_dpo.py --help

The callback is one line (see ``spinal_callback/demo/lightning_recipe.py``)::

    trainer = L.Trainer(..., callbacks=[SpinalLightningCallback(SpinalConfig(interval=10))])
"""

import sys
from pathlib import Path

try:
    from spinal_callback.demo.lightning_recipe import main
except ModuleNotFoundError as err:  # a source checkout without `pip install -e .`
    if err.name != "spinal_callback":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from spinal_callback.demo.lightning_recipe import main

if __name__ == "__main__":
    raise SystemExit(main())
