"""Early readouts that reweight distillation against featural bias (arXiv 2310.18590)."""

__version__ = "0.1.0"
