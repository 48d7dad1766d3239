"""`python -m fogline` is the `fogline` command."""

from fogline.cli import main

main()
