"""Runtime: what runs between a device and an edge server (shaped links, transport, timing)."""
