"""Deduplication of images, free of Dagster: perceptual (pHash) near-duplicate clustering that scales to 10⁸ rows."""
