"""Metrics: pure functions; each declares its name and direction in ``metrics.base.SPECS``."""

from pellucid.metrics.activations import pooled_activations
from pellucid.metrics.base import SPECS, MetricSpec
from pellucid.metrics.faithfulness import deletion_auc, deletion_insertion, insertion_auc
from pellucid.metrics.gates import assigned_class, gate_density, gate_overlap
from pellucid.metrics.imputation import noisy_linear_imputation
from pellucid.metrics.localisation import (
    energy_pointing_game,
    pointing_game,
    pointing_tolerance,
    top_q_iou,
)
from pellucid.metrics.mis import (
    class_share,
    mi_matrix,
    mis_from_activations,
    mutual_information_score,
)
from pellucid.metrics.parts import location_instability, part_interpretability  # noqa: F401
from pellucid.metrics.paths import (  # noqa: F401  (public API)
    CalculationPaths,
    active_fraction,
    calculation_paths,
    class_mean_paths,
    class_similarity,
    jaccard_matrix,
    layer_similarity,
    path_summary,
)
from pellucid.metrics.randomise import parameter_blocks, randomised_copy
from pellucid.metrics.sanity import (
    RANDOMISATION_MODES,
    cascading_randomisation,
    data_randomisation,
    hog_similarity,
    map_similarities,
    model_randomisation,
    spearman_rank_correlation,
    ssim_similarity,
)

__all__ = [
    "RANDOMISATION_MODES",
    "SPECS",
    "MetricSpec",
    "assigned_class",
    "cascading_randomisation",
    "class_share",
    "data_randomisation",
    "deletion_auc",
    "deletion_insertion",
    "energy_pointing_game",
    "gate_density",
    "gate_overlap",
    "hog_similarity",
    "insertion_auc",
    "map_similarities",
    "mi_matrix",
    "mis_from_activations",
    "model_randomisation",
    "mutual_information_score",
    "noisy_linear_imputation",
    "parameter_blocks",
    "pointing_game",
    "pointing_tolerance",
    "pooled_activations",
    "randomised_copy",
    "spearman_rank_correlation",
    "ssim_similarity",
    "top_q_iou",
]
