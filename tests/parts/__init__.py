"""Tests against real parts: processes that die, supervisord, HAProxy, Redis, etcd, tmpfs, prlimit, real sockets."""
