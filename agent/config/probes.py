"""Probe kinds beyond HTTP, TCP connect, exec and process, shaped like blackbox_exporter's probers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.config.types import HostPort, Regex, Section

# The record types a DNS check may ask for (blackbox_exporter takes any miekg/dns type name).
DnsQueryType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "SOA", "PTR", "CAA", "ANY"]
DnsRcode = Literal["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
                   "NXRRSET", "NOTAUTH", "NOTZONE"]


class RecordsValidation(Section):
    """blackbox_exporter's ``validate_*_rrs``: regexes over each record as text (``name<TAB>ttl<TAB>IN<TAB>type<TAB>data``).

    Its ``fail_if_all_match_regexp`` is left out: blackbox_exporter fails when *not* all records match it.
    """

    fail_if_matches_regexp: list[Regex] = Field([], description="Fail if any record matches any of these.")
    fail_if_not_matches_regexp: list[Regex] = Field(
        [], description="Fail if any record does not match one of these (or there is no record).")
    fail_if_none_matches_regexp: list[Regex] = Field(
        [], description="Fail if no record matches one of these (or there is no record).")


class DnsProbe(Section):
    """Ask a DNS server one question; healthy on a valid rcode and records that pass the validations."""

    server: HostPort = Field(description="HOST:PORT of the DNS server asked (an IP address; `[::1]:53` for IPv6).")
    query_name: str = Field(min_length=1, description="The name asked for.")
    query_type: DnsQueryType = Field("A", description="The record type asked for.")
    transport: Literal["udp", "tcp"] = Field("udp", description="Ask over UDP or TCP.")
    recursion_desired: bool = Field(True, description="Set the RD flag, asking the server to recurse.")
    valid_rcodes: list[DnsRcode] = Field(["NOERROR"], min_length=1, description="Response codes counted as healthy.")
    validate_answer_rrs: RecordsValidation = Field(RecordsValidation(),
                                                   description="Checks on the answer section.")
    validate_authority_rrs: RecordsValidation = Field(RecordsValidation(),
                                                      description="Checks on the authority section.")
    validate_additional_rrs: RecordsValidation = Field(RecordsValidation(),
                                                       description="Checks on the additional section.")
