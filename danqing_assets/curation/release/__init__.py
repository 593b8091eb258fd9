"""Release building blocks: the published schema, takedowns, gates and the dataset card."""
