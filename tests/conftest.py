"""Fixtures shared by several test modules: the throwaway coordination stores."""

from tests.storeparts import etcd_server, redis_server

__all__ = ["etcd_server", "redis_server"]
