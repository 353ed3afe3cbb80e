"""Helpers the tests share (not fixtures: those are in tests/conftest.py); one module per concept."""

from tests.support.env import ROOT, service_env, unique_prefix
from tests.support.waiting import eventually

__all__ = ["ROOT", "eventually", "service_env", "unique_prefix"]
