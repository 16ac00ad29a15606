"""The agent's own descriptor limit: raised from the soft to the hard limit at start.

A soft RLIMIT_NOFILE of 1024 is a relic of select(), whose fd_set holds 1024 descriptors;
the agent waits with epoll (asyncio) and poll (subprocess), so like Go programs since 1.19
it takes what the hard limit allows. The margin between its working set and the limit is
then the reserve its checks and healing draw on while clients hold connections open.
"""

from __future__ import annotations

import resource

# Linux's default fs.nr_open: setrlimit refuses more, and an unlimited hard limit asks for it.
NR_OPEN_DEFAULT = 1 << 20


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NR_OPEN_DEFAULT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            return soft, soft  # refused (a sandbox, fs.nr_open lowered): keep working within the soft limit
        return soft, wanted
    return soft, soft
