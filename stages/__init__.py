"""The DVC stages (dvc.yaml): each is a thin command over the same functions the pipeline runs."""
