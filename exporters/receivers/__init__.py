"""Receivers: each sends one notification to one kind of endpoint and reports the outcome.

``webhook`` (Alertmanager's webhook payload), ``slack`` (incoming webhook),
``slack_app`` (bot token: one living message per group) and ``alertmanager``
(API v2 push). All follow ``exporters.delivery.Receiver``.
"""
