"""One module per settings section, so each stage owns its own configuration."""
