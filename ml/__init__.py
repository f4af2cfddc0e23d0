"""Machine learning: feature spec, training, evaluation, MLflow registry, scoring.

Pure functions over DataFrames; never imports Dagster.
"""
