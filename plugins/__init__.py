"""The zoo's built-in plugins, installed as ``zoo_plugins`` and listed in registry.toml."""
