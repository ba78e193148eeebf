"""``python -m zoo`` (and ``torchrun -m zoo``) runs the CLI."""

from zoo.cli import main

if __name__ == "__main__":
    main()
