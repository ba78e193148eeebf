"""The zoo's built-in plugins, installed as ``zoo_plugins`` and registered
through zoo's own entry points (pyproject.toml)."""
