"""The health model pipeline: fleet simulator, training, evaluation (not shipped in the wheel)."""
