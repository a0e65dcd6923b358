"""Smart-city IOC monitoring backend.

The `ioc` namespace maps the repository's top-level folders (see pyproject.toml):
``ioc.contract`` (schemas, topology, topics, tables, metric names) is the one source of
truth; ``ioc.simulators`` produce it, ``ioc.streams`` consume it, ``ioc.services`` serve it,
``ioc.dashboards`` render it, ``ioc.deploy`` runs the infrastructure it needs.
"""

__version__ = "0.1.0"
