"""What every vocreg service stands on: config, storage, bus, edge, auth, metrics, calendar."""
