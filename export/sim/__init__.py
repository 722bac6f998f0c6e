"""Training and evaluation side of the signal code: the PD simulator, its pulse shapes, event scoring and
the wavelet baseline. Pure numpy/scipy (PyWavelets for the baseline); the serving package never imports it.
"""
