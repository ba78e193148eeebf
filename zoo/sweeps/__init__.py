"""Hyperparameter sweeps on Optuna: each trial an ordinary zoo run, the study in an RDB
storage (SQLite on one machine; PostgreSQL or MySQL for workers on many).

Optuna is an optional extra (``pip install 'zoo[sweep]'``); nothing here is imported by
the core or by ``zoo --help``.
"""
