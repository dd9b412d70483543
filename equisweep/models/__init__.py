"""Plain ``nn.Module`` networks and group layers; nothing here imports Lightning, Ray or W&B."""

from equisweep.models.gconv import GroupConv, LiftingConv
from equisweep.models.heads import ClassifierHead
from equisweep.models.norm import GroupBatchNorm
from equisweep.models.pooling import GlobalAvgPool, GroupPool, SpatialPool
from equisweep.models.registry import build_model, list_models, register_model
from equisweep.models.relaxation import RELAXATIONS, relaxation_diagnostics, relaxation_penalty

__all__ = ["RELAXATIONS", "ClassifierHead", "GlobalAvgPool", "GroupBatchNorm", "GroupConv", "GroupPool",
           "LiftingConv", "SpatialPool", "build_model", "list_models", "register_model", "relaxation_diagnostics",
           "relaxation_penalty"]
