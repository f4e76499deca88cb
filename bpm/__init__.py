"""The `bpm` command: the application shell over engine, processes and web."""
