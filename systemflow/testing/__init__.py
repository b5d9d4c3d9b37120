"""
The testing kit: run flows against mocked services in ordinary unit tests.
"""

__all__: list[str] = []
