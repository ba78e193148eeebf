"""The generate task: the generator plugin base, its sample grids, and the generative
metrics judged by zoo's pinned evaluator."""
