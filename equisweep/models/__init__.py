"""Plain ``nn.Module`` networks and group layers; nothing here imports Lightning, Ray or W&B."""

from equisweep.models.gconv import GroupConv, LiftingConv
from equisweep.models.heads import ClassifierHead
from equisweep.models.norm import GroupBatchNorm
from equisweep.models.pooling import GlobalAvgPool, GroupPool, SpatialPool
from equisweep.models.registry import build_model, list_models, register_model
from equisweep.models.relaxation import get_relaxation, list_relaxations, register_relaxation

# The built-in relaxations register themselves beside the layers they relax, in this order.
from equisweep.models import relaxed_gconv, rpp_gconv, partial_gconv  # noqa: F401  isort: skip
# The built-in invariance wrappers register themselves, each in its own module.
from equisweep.models import group_average, canonicalize, augerino  # noqa: F401  isort: skip

__all__ = ["ClassifierHead", "GlobalAvgPool", "GroupBatchNorm", "GroupConv", "GroupPool", "LiftingConv",
           "SpatialPool", "build_model", "get_relaxation", "list_models", "list_relaxations", "register_model",
           "register_relaxation"]
