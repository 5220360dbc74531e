"""The names of the selection methods (no heavy imports: the CLI's parser needs them for --help)."""

METHODS = (
    "v1",
    "random_pairing",
    "bradley_terry",
    "knockout",
    "round_robin",
    "pointwise",
    "majority",
    "random_pick",
)
