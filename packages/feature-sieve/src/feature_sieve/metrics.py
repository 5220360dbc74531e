"""Group metrics, re-exported from `paperworks_shared.groups` (identical definitions in early-readout)."""

from paperworks_shared.groups import (
    GroupMetrics,
    compute_group_metrics,
    group_accuracies,
    worst_group_accuracy,
)

__all__ = ["GroupMetrics", "compute_group_metrics", "group_accuracies", "worst_group_accuracy"]
