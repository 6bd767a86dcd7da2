"""Locust load tests (see docs/performance.md)."""
