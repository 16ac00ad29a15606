"""The DNS probe: one question to one server, judged and measured as blackbox_exporter's DNS prober does.

dnspython asks (imported only when a DNS check exists: it costs ~6 MiB). Records are matched as
text in miekg/dns' layout (``name<TAB>ttl<TAB>class<TAB>type<TAB>data``), so regexes written for
blackbox_exporter match the same records here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from agent.config.probes import DnsProbe, RecordsValidation
from agent.health.results import ProbeMetric, ProbeResult
from agent.httpclient import os_reason
from healers.backends.children import agent_side_errno
from rules.durations import format_duration


async def probe_dns(probe: DnsProbe, timeout_s: float) -> ProbeResult:
    """Ask ``probe.server`` the question; healthy on a valid rcode and records passing every validation."""
    host, _, port = probe.server.rpartition(":")
    query = dns.message.make_query(probe.query_name, probe.query_type)
    if not probe.recursion_desired:
        query.flags &= ~dns.flags.RD
    ask = dns.asyncquery.tcp if probe.transport == "tcp" else dns.asyncquery.udp
    start = time.monotonic()
    try:
        response = await ask(query, host.strip("[]"), timeout=timeout_s, port=int(port))
    except dns.exception.Timeout:
        return _failed(start, f"no answer within {format_duration(timeout_s)}")
    except OSError as exc:
        return _failed(start, f"query failed: {os_reason(exc)}", agent_side_errno(exc))
    except dns.exception.DNSException as exc:
        return _failed(start, f"bad answer: {exc}")
    duration_s = time.monotonic() - start
    metrics = [
        ProbeMetric("probe_dns_query_succeeded", "Whether the query got an answer.", 1.0),
        ProbeMetric("probe_dns_answer_rrs", "Records in the answer section.", len(response.answer)),
        ProbeMetric("probe_dns_authority_rrs", "Records in the authority section.", len(response.authority)),
        ProbeMetric("probe_dns_additional_rrs", "Records in the additional section.", len(response.additional)),
    ]
    if probe.query_type == "SOA":
        serials = [float(rdata.serial) for rrset in response.answer for rdata in rrset
                   if rdata.rdtype == dns.rdatatype.SOA]
        if serials:
            metrics.append(ProbeMetric("probe_dns_serial", "The serial number of the zone.", serials[-1]))
    rcode = dns.rcode.to_text(response.rcode())
    error = ""
    if rcode not in probe.valid_rcodes:
        error = f"rcode {rcode}, expected {', '.join(probe.valid_rcodes)}"
    else:
        sections = (("answer", response.answer, probe.validate_answer_rrs),
                    ("authority", response.authority, probe.validate_authority_rrs),
                    ("additional", response.additional, probe.validate_additional_rrs))
        for section, rrsets, validation in sections:
            error = invalid_records(section, record_lines(rrsets), validation)
            if error:
                break
    return ProbeResult(not error, duration_s, error=error, metrics=tuple(metrics))


def _failed(start: float, reason: str, agent_error: str = "") -> ProbeResult:
    unanswered = (ProbeMetric("probe_dns_query_succeeded", "Whether the query got an answer.", 0.0),)
    return ProbeResult(False, time.monotonic() - start, None, reason, agent_error, unanswered)


def record_lines(rrsets: Sequence[dns.rrset.RRset]) -> list[str]:
    """Each record as miekg/dns prints it: ``name<TAB>ttl<TAB>class<TAB>type<TAB>data``."""
    return [
        "\t".join((rrset.name.to_text(), str(rrset.ttl), dns.rdataclass.to_text(rrset.rdclass),
                   dns.rdatatype.to_text(rrset.rdtype), rdata.to_text()))
        for rrset in rrsets for rdata in rrset
    ]


def invalid_records(section: str, records: list[str], validation: RecordsValidation) -> str:
    """Why ``records`` fail ``validation``, as blackbox_exporter's validRRs decides; "" when they pass."""
    if not records and (validation.fail_if_not_matches_regexp or validation.fail_if_none_matches_regexp):
        return f"no {section} records, but a match is required"
    for pattern in validation.fail_if_matches_regexp:
        hit = next((record for record in records if re.search(pattern, record)), None)
        if hit is not None:
            return f"{section} record {hit!r} matches {pattern!r}"
    for pattern in validation.fail_if_not_matches_regexp:
        miss = next((record for record in records if not re.search(pattern, record)), None)
        if miss is not None:
            return f"{section} record {miss!r} does not match {pattern!r}"
    if validation.fail_if_none_matches_regexp and not any(
            re.search(pattern, record) for record in records for pattern in validation.fail_if_none_matches_regexp):
        return f"no {section} record matches {', '.join(map(repr, validation.fail_if_none_matches_regexp))}"
    return ""
