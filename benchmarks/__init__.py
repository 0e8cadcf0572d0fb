"""Benchmarks for django-idempotency: ``python -m benchmarks [--quick]``.

Not part of the package. A tiny Django project (``settings``, ``urls``,
``views``, ``models``) serves one create endpoint twice, bare and with the
package; the scenarios compare the two in the same run. docs/benchmarks.md
explains what is measured and how to read the report.
"""
