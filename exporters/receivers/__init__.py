"""Receivers: each sends one notification to one kind of endpoint and reports the outcome.

``webhook`` (Alertmanager's webhook payload), ``slack`` (incoming webhook),
``slack_app`` (bot token: one living message per group) and ``alertmanager``
(API v2 push). All follow ``exporters.delivery.Receiver``. Nothing here imports
them: the agent imports a receiver's module only when the config uses that kind.
"""

from collections.abc import Mapping, Sequence

from exporters.notification import Notification

# Notifications whose group key starts with this carry a healer's notice (one alert,
# labels service/incident_id/severity, annotation summary).
HEALING_GROUP_PREFIX = "healing:"


def is_healing(notification: Notification) -> bool:
    """Whether ``notification`` carries a healer's notice."""
    return notification.group_key.startswith(HEALING_GROUP_PREFIX) and len(notification.alerts) == 1


# Tables receivers keep state in, by StateDB namespace; created whatever the config uses, so a reload may add one.
RECEIVER_MIGRATIONS: Mapping[str, Sequence[str]] = {
    "slack_app": (
        """CREATE TABLE slack_messages (
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        channel TEXT NOT NULL,
        ts TEXT NOT NULL,
        resolved INTEGER NOT NULL,
        PRIMARY KEY (receiver, group_key)
    )""",
    ),
}
