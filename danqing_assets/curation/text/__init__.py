"""Text stage: caption refinement and the paper's coarse and text filters, free of Dagster."""
