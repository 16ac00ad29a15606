"""Fixtures shared by several test modules: the throwaway coordination stores."""

from tests.storeparts import redis_server

__all__ = ["redis_server"]
