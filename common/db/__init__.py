"""Database helpers for every app: bulk writes (bulk.py) and query rows into DataFrames
(frames.py). Model-agnostic: they take a model class or SQL, never an app's models."""
