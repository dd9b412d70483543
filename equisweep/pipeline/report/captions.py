"""The report's figures' titles and captions, and the words and table of the data's asymmetry."""

from __future__ import annotations

import pandas as pd

FIGURE_TEXT = {
    "accuracy_by_angle": ("Accuracy over test rotation angle",
                          "Mean test accuracy over seeds at each rotation angle, with a band of ± one std; one panel "
                          "per training regime (and dataset, where it varies), one colour per arm (exact solid, "
                          "approximate dashed, relaxed, wrapped and penalised dash-dotted, plain CNN dotted). The "
                          "small axis under each panel shows the angles that regime trains on."),
    "gap_map": ("Gap map", "Each arm's accuracy minus its exact reference's, in points with its 95 % interval, per "
                "condition and arm (rows in the verdict table's order, labels in the arm's colour) and metric; "
                "starred cells differ significantly after the Holm correction, the other cells are muted."),
    "relaxation_gain": ("What breaking symmetry bought", "Each arm's accuracy gained over its exact reference (points, "
                        "difference of the means over seeds, bars: its 95 % interval) against the arm's measured "
                        "output equivariance error after training (eq_error, mean over seeds, log scale; the dotted "
                        "line is the floor where an arm stayed exact), one colour per arm, one marker per "
                        "condition, one panel per metric. Points up and to the right: the arm broke its symmetry "
                        "and gained; up at the left: it gained while staying (nearly) exact, so something else "
                        "bought the gain; down and to the right: breaking the symmetry cost accuracy."),
    "gain_by_asymmetry": ("Gain against the asymmetry of the data", "Each approximate or relaxed arm's accuracy gained "
                          "over its exact reference of the same (else the nearest) size, in points with its 95 % "
                          "interval (the paper's-pair rows are left out), against the measured asymmetry of its "
                          "condition's data (the table below: accuracy of telling an image from the same image "
                          "transformed, bars its 95 % interval), one colour and marker per arm, one panel per metric. "
                          "Dashed: no gain, and invariant data (0.5). Points up and to the right: the arm gained "
                          "where the data has a preferred orientation."),
    "gap_by_input_size": ("Gap by input size", "Approximate minus exact accuracy in points for each approximate "
                          "input size, in the arm's colour; bars: ± one standard error."),
    "gap_by_gaussian_std": ("Gap by the spread of training angles", "Approximate minus exact accuracy in points "
                            "against the std of the Gaussian training regime, one line per approximate arm."),
    "layer_errors": ("Equivariance error per layer", "Measured relative equivariance error of each layer after "
                     "training (mean over seeds, bars min..max), one colour per arm, one marker per training regime: "
                     "where the approximate net learned to break its symmetry."),
}


ASYMMETRY_INTRO = ("How far each dataset, as its training regime shows it, is from invariant under the arms' "
                   "group (p4 for the plain CNN): the held-out accuracy of a small plain CNN telling a training image "
                   "from the same image transformed by a random non-identity group element, with its 95 % Wilson "
                   "interval (0.5: invariant data; toward 1: a preferred orientation). It measures the images only, "
                   "not the labels.")


def asymmetry_display(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep's asymmetry table as the report shows it: one row per dataset, regime and group, the measured
    accuracy with its interval, the held-out images and the classifier's training steps and seed."""
    return pd.DataFrame({
        "dataset": table["dataset"], "train_symmetry": table["train_symmetry"], "group": table["group"],
        "asymmetry [95% CI]": [f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                               for v, lo, hi in zip(table["asymmetry"], table["low"], table["high"])],
        "held-out images": table["n"], "steps": table["steps"], "seed": table["seed"]})
