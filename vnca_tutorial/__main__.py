"""``python -m vnca_tutorial ...`` runs the ``vnca`` command (also under ``torchrun -m vnca_tutorial``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
