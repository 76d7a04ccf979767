"""River model specs, signed artifacts and the model registry of riverops."""
