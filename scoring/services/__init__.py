"""Every state change of the churn engine, the bridge between ORM rows and `scoring.ml`.

`datasets` assembles training data, `training` is the model registry (train, promote, load,
score a frame), `runs` scores every customer in chunks. Import from the module itself.
"""
