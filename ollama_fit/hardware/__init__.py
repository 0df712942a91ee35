"""Hardware: what memory a model may use on this (or a simulated) machine."""
