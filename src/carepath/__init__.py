"""carepath: patient-journey automation engine."""

__version__ = "0.1.0"
