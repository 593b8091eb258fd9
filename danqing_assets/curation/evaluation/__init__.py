"""Dataset analysis (the paper's figures) and model evaluation on Chinese-CLIP-format benchmark sets."""
