"""Adapters for the real services: PostgreSQL, Kafka and Elasticsearch.

Each module translates its driver's errors into :mod:`cqrskit.errors` at the
edge, so nothing above this package handles a driver exception.
"""
