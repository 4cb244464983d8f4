"""Pure churn-model core: features → labels → datasets → candidates → train/select/calibrate →
explain, drift, artifacts, tiers. Takes pandas/numpy, returns frozen dataclasses; imports no
Django. Import from the module itself (`scoring.ml.train`, `scoring.ml.features`, …).
"""
