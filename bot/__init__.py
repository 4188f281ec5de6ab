"""Application wiring of 医保小助手: configuration, app factory, database lifecycle, CLI."""
