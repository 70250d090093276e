"""``python -m omnispeech``: the command line (also what ``torchrun -m omnispeech`` runs)."""

from omnispeech.cli import main

if __name__ == "__main__":
    main()
