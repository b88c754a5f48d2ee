"""Keras models: CovPoolFER, the RRDB generator and the critic."""
