"""Evaluation: ``r1zero eval`` and validation during training share these functions."""
