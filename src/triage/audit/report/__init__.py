"""``triage audit-report``: what a reviewed audit batch says about the model, against targets.

Reads the batch (``audit.batch``, default the newest) from the audit database, the prediction
log for the batch's period, the training split (``audit.report.train_data``) and the test
predictions of ``triage evaluate`` (``audit.report.reference_predictions``, optional). Writes
``<audit.report.out_dir>/<batch>/``: ``report.md``, ``report.html``, ``metrics.json`` and
``plots/*.png``, and logs all of it to MLflow (one run per report, tagged with the batch and the
model version).

For a sampled batch (see :mod:`triage.audit.stats` for the two estimates):

* accuracy per head; false-positive rate of the automated decisions per predicted class and per
  action (a false positive: the reviewer's intent differs from the model's); precision of the
  moderation actions; each with a control-slice and a weighted estimate and 95% intervals;
* agreement: Cohen's kappa between the first two reviewers of the doubly reviewed items, with a
  bootstrap interval;
* calibration on the control slice (ECE, reliability diagram): the model's confidence against
  the reviewers' labels;
* drift against the training data: label mix (predicted over the whole period, and estimated
  true from the sample), language mix, confidence distribution (against the test predictions),
  as population stability indices;
* a verdict against ``audit.report.targets``, judged on the weighted estimates: FAIL when an
  estimate misses a target, PASS when every interval is within its target, else INCONCLUSIVE
  (estimates within target but intervals that cross it, or targets with no data).

For a label-issue batch: how many flagged training labels the reviewers found wrong.

The parts: :mod:`.estimates` (accuracy, false-positive rates, agreement, calibration),
:mod:`.drift`, :mod:`.metrics` (all numbers and the verdict), :mod:`.sections` (the text),
:mod:`.render` (Markdown and HTML from ``templates/``), :mod:`.figures`, :mod:`.stage` (``run``).
"""

from triage.audit.report.stage import run

__all__ = ["run"]
