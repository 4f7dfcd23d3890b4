"""`python -m digital_finance` runs the CLI."""

from digital_finance.cli.main import main

main()
