"""The attack task: perturbations against any classifier's ``predict``."""
