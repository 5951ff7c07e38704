"""Training and fine-tuning (kept apart from the inference API)."""
