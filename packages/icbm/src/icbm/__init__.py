"""Interactive concept bottleneck models: budget-aware concept querying (CooP, AAAI 2023)."""

__version__ = "0.1.0"
