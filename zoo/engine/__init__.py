"""The engine: the trainer that drives a plugin (the plugin never imports it), the
generic evaluator with its metric registry, and the step benchmark."""
