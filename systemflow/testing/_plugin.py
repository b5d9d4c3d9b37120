"""
The systemflow pytest plugin (registered through the ``pytest11`` entry point).

Pytest imports this module before coverage starts, so it imports nothing from
systemflow at module level.
"""
