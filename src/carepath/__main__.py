"""`python -m carepath` runs the command line."""

from carepath.entrypoints.cli import main

main()
