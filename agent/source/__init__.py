"""The git source: the bare mirror of the config repo, the commits read from it, and the
trust put in them (signatures, history)."""
