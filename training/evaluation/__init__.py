"""Evaluation: a model file scored on labelled pairs, models compared, the paper table rebuilt."""
