"""The real Alertmanager as oracle for notification templates: the same templates file and alerts, rendered by
Alertmanager 0.25's email notifier (read back from a local SMTP server) and by healwatch, give the same text.

The template walks the whole notification data (status, receiver, group/common labels and annotations, the
alerts' fields and times, Firing/Resolved, KV's methods) and Alertmanager's functions; the default subject
(email.default.subject) is compared too.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from exporters.notification import AlertPayload, Notification
from exporters.templating import TemplateSet
from harness.processes import free_port, require_binary, stop, wait_for
from harness.smtp import Mailbox, SmtpServer

TEMPLATES = """\
{{ define "t.subject" }}[{{ .Status | toUpper }}:{{ .Alerts.Firing | len }}/{{ .Alerts.Resolved | len }}] \
{{ .GroupLabels.SortedPairs.Values | join "," }} {{ .Receiver }}{{ end }}
{{ define "t.text" }}{{ .Status }} {{ .ExternalURL }} {{ .Receiver }}
group={{ .GroupLabels }} common={{ .CommonLabels.SortedPairs }} ann={{ .CommonAnnotations.SortedPairs }}
names={{ .CommonLabels.Names }} values={{ .CommonLabels.Values }} \
rest={{ (.CommonLabels.Remove .GroupLabels.Names).Names }}
{{ range .Alerts }}{{ .Status }} {{ .Labels.instance }} {{ .Fingerprint }} {{ .StartsAt }} {{ .StartsAt.Unix }} \
{{ .EndsAt.Unix }} {{ .GeneratorURL }} {{ .Annotations.summary | title }} {{ if match "^b" .Labels.instance }}B{{ end }} \
{{ reReplaceAll "(.)" "$1-" .Labels.instance }} {{ .Labels.SortedPairs.Names | join "+" }} {{ .Annotations }}
{{ end }}{{ range .Alerts.Firing }}F:{{ .Labels.instance }} {{ end }}{{ range .Alerts.Resolved }}R:{{ .Labels.instance }}\
{{ end }}
{{ printf "%q" (stringSlice "x" "y") }} {{ safeHtml "<b>" }} {{ len .Alerts }} \
{{ toLower "ÀB" }} {{ (index .Alerts 0).StartsAt.Format "2006-01-02T15:04" }}{{ end }}
"""
EXTERNAL_URL = "http://am.example:9093"


def _config(smtp_port: int) -> str:
    email = {"to": "ops@example.org", "from": "am@example.org", "smarthost": f"127.0.0.1:{smtp_port}",
             "require_tls": False, "html": ""}
    return json.dumps({
        "templates": ["*.tmpl"],
        "route": {"receiver": "team.custom", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1m",
                  "routes": [{"matchers": ['alertname="Down"'], "receiver": "team.custom", "continue": True},
                             {"matchers": ['alertname="Down"'], "receiver": "defaults"}]},
        "receivers": [
            {"name": "team.custom", "email_configs": [{
                **email, "headers": {"Subject": '{{ template "t.subject" . }}'}, "text": '{{ template "t.text" . }}',
                "send_resolved": True}]},
            {"name": "defaults", "email_configs": [{**email, "text": "x", "send_resolved": True}]},
        ],
    })


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.timeout(30)
def test_templates_render_as_alertmanager_renders_them(tmp_path: Path) -> None:
    """Subject and text of Alertmanager's email equal healwatch's rendering of the same data, byte for byte."""
    binary = require_binary("prometheus-alertmanager")
    mailbox, smtp_port, port = Mailbox(), free_port(), free_port()
    (tmp_path / "t.tmpl").write_text(TEMPLATES)
    (tmp_path / "alertmanager.yml").write_text(_config(smtp_port))
    now = float(int(time.time()))
    alerts = [
        AlertPayload.of({"alertname": "Down", "instance": instance, "severity": "critical", "team": "db"},
                        starts_at=now - 300 - index, ends_at=now - 5 if instance == "c" else None,
                        annotations={"summary": f"{instance} is down", "runbook": "https://rb/down"},
                        generator_url=f"http://prom:9090/graph?g0.expr=up%7Binstance%3D%22{instance}%22%7D")
        for index, instance in enumerate(("a", "b", "c"))
    ]
    postable = [{"labels": a.labels, "annotations": a.annotations, "startsAt": _iso(a.starts_at),
                 "generatorURL": a.generator_url, **({"endsAt": _iso(a.ends_at)} if a.ends_at else {})}
                for a in alerts]
    argv = [binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={EXTERNAL_URL}",
            "--cluster.listen-address=", "--log.level=warn"]
    with SmtpServer(mailbox, None, smtp_port), (tmp_path / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for(lambda: _ready(port, process), timeout_s=10)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", json.dumps(postable).encode(),
                                             {"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
            wait_for(lambda: len(mailbox.received) >= 2, timeout_s=10)
        finally:
            stop(process)
    by_subject_kind = {r.message["Subject"].startswith("[FIRING:2/1]"): r.message for r in mailbox.received}
    custom, default = by_subject_kind[True], by_subject_kind[False]
    body = custom.get_body(("plain",))
    assert body is not None
    theirs = body.get_content().replace("\r\n", "\n")

    templates = TemplateSet([tmp_path / "t.tmpl"])
    ours = {name: Notification(id="n", receiver=name, group_key="g", group_labels={"alertname": "Down"},
                               alerts=tuple(alerts), created_at=now + 1, external_url=EXTERNAL_URL)
            for name in ("team.custom", "defaults")}
    assert templates.parse("team.custom", "title", '{{ template "t.subject" . }}').execute(ours["team.custom"]) == \
        custom["Subject"]
    assert templates.parse("team.custom", "text", '{{ template "t.text" . }}').execute(ours["team.custom"]) == theirs
    assert templates.named("defaults", "email.default.subject").execute(ours["defaults"]) == default["Subject"]


def _ready(port: int, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "alertmanager exited; see alertmanager.log"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
