"""The lead-time study: does the layer geometry warn earlier than the checks users already have?

- :mod:`.scenarios` — what each study run does (stable, learning-rate ramp, label flip, too-small β);
- :mod:`.runner` — one DPO run of the demo model with the spinal callback and a recorder attached
  (needs the ``demo`` extra);
- :mod:`.ground_truth` — the behavioural onset of a degradation, from held-out evaluations;
- :mod:`.baselines` — the detectors compared with spinal's, replayed on a run's recorded series;
- :mod:`.analysis` — alarms per detector, detection rates, lead times, false alarms, plots.

``scripts/study_early_warning.py`` drives them; ``docs/evidence.md`` reports the results. Importing this
package imports neither transformers nor Lightning.
"""
