from __future__ import annotations

from tests.testapp.urls import urlpatterns

__all__ = ["urlpatterns"]
