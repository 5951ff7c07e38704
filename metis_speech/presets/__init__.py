"""Size presets as data (JSON): official = released checkpoint sizes, tiny = tests / CPU."""
