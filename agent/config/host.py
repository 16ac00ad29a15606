"""The ``host`` section: the host collector and the filesystems it leaves out."""

from __future__ import annotations

from pydantic import Field

from agent.config.types import PositiveDuration, Section


class HostConfig(Section):
    enabled: bool = Field(True, description="Collect the host's CPU, memory, disk and network metrics (node_*).")
    interval: PositiveDuration = Field(15.0, description="How often the host metrics are collected.")
    filesystem_exclude_types: list[str] = Field(
        default_factory=lambda: sorted(_PSEUDO_FILESYSTEMS),
        description="Filesystem types never reported (pseudo and virtual filesystems).",
    )
    textfile_directory: str | None = Field(
        None,
        description="Directory of `*.prom` files whose metrics are reported with the host's, as node_exporter's "
        "textfile collector (`node_textfile_mtime_seconds`, `node_textfile_scrape_error`); unset: off.",
    )


# node_exporter's default --collector.filesystem.fs-types-exclude.
_PSEUDO_FILESYSTEMS: set[str] = {
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc",
    "procfs", "pstore", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tracefs",
}
