"""The report's figures, one module each, drawn from a sweep's tables (``results.parquet``, ``angles.parquet``, a
verdict table); ``common`` holds what they share.

Every function takes DataFrames and returns a ``matplotlib.figure.Figure`` built directly (no pyplot, so no global
figure registry: safe in threads, nothing leaks); ``save_figure`` writes it as PNG and SVG. Only finished trials
are drawn. Nothing here imports training code: matplotlib, numpy and pandas only (the report's arms, and the
package's light modules for names).

Conventions shared by the figures:

- Arms, their labels, colours and line styles are ``equisweep.pipeline.report.arms``'s: across conditions an arm
  is ``(group, input_size, exact)`` plus every other setting that varies across cells (``relaxation``,
  ``subsampling``, ``invariance``, ``eq_penalty``, ...; not ``seed``, not the data, not a searched hyperparameter);
  each arm keeps one colour in every figure; exact arms are solid, approximate dashed, relaxed, wrapped and
  penalised arms dash-dotted, plain-CNN arms dotted.
- The data a trial learns from (``dataset`` where it varies, and the training regime) picks the panel, not the arm.
- A cell that holds several trials of an Optuna search is represented by its trial with the best ``val_acc``.
- Training regimes (``train_symmetry``) are ordered none, flip, Gaussian (by std, then mean), c4, d4, uniform.
"""

from equisweep.pipeline.report.arms import setting_columns
from equisweep.pipeline.report.figures.accuracy_by_angle import (
    BAND_GID,
    DENSITY_AXIS,
    OVERLAY_GID,
    accuracy_by_angle,
    wrapped_normal_pdf,
)
from equisweep.pipeline.report.figures.common import save_figure
from equisweep.pipeline.report.figures.gain_by_asymmetry import asymmetry_points, gain_by_asymmetry
from equisweep.pipeline.report.figures.gap_by import gap_by
from equisweep.pipeline.report.figures.gap_map import MUTED, gap_map
from equisweep.pipeline.report.figures.layer_errors import layer_errors
from equisweep.pipeline.report.figures.relaxation_gain import relaxation_gain

__all__ = ["BAND_GID", "DENSITY_AXIS", "MUTED", "OVERLAY_GID", "accuracy_by_angle", "asymmetry_points",
           "gain_by_asymmetry", "gap_by", "gap_map", "layer_errors", "relaxation_gain", "save_figure",
           "setting_columns", "wrapped_normal_pdf"]
