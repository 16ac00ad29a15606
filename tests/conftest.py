"""Fixtures shared by several test modules: the throwaway coordination stores, from harness."""

from harness.stores import etcd_server, redis_server

__all__ = ["etcd_server", "redis_server"]
