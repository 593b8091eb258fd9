"""Chinese-CLIP embeddings: model loading and batched embedding, free of Dagster."""
