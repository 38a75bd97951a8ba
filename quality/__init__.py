"""Data quality: validation of each version (Great Expectations) and drift (Evidently)."""
