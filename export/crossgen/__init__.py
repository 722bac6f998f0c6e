"""A second PD signal generator, written independently of export.sim, for evaluation only.

Nothing in it is imported by training, model selection or threshold tuning (a unit test checks the
imports both ways). See export.crossgen.generator.
"""
