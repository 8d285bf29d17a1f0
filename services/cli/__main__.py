"""`python -m services.cli` is the `vocreg` command."""
from services.cli.main import main

main()
