"""The tables on disk: their layout and read access for listing and SQL."""
