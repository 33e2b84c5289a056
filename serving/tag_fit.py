"""Entry point the retrain job probes for (`training/retrain.py`): fit and save the tag cut points."""

from serving.tagging import fit_and_save

__all__ = ["fit_and_save"]
