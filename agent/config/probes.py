"""Probe kinds beyond HTTP, TCP connect, exec and process, shaped like blackbox_exporter's probers."""

from __future__ import annotations

import importlib.util
import os
import socket
import ssl
from typing import Literal

from pydantic import Field, model_validator

from agent.config.types import HostPort, Regex, Section

ICMP_PROTOCOL: dict[int, int] = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
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


class TlsConfig(Section):
    """How a check's TLS is set up and what it asks of the server's certificates (blackbox_exporter's tls_config)."""

    insecure_skip_verify: bool = Field(
        False, description="Accept any certificate (self-signed, expired, another host's); still reported.")
    server_name: str | None = Field(None, description="Name sent in SNI and verified; by default the address' host.")
    ca_file: str | None = Field(None, description="PEM file of the CAs trusted instead of the system's.")
    min_days_left: float | None = Field(
        None, gt=0, description="Fail while a certificate the server presents expires within this many days.")

    @model_validator(mode="after")
    def _ca_file_loads(self) -> TlsConfig:
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load ca_file {self.ca_file!r}: {exc}") from None
        return self


class DialogueStep(Section):
    """One entry of a TCP dialogue, as blackbox_exporter's ``query_response``: expect, then send, then starttls."""

    expect: Regex | None = Field(None, description="Read lines until one matches this regex; fail at EOF or timeout.")
    send: str | None = Field(None, description="Then send this text and a newline.")
    starttls: bool = Field(False, description="Then upgrade the connection to TLS (after e.g. STARTTLS was accepted).")

    @model_validator(mode="after")
    def _something(self) -> DialogueStep:
        if self.expect is None and self.send is None and not self.starttls:
            raise ValueError("expected at least one of expect, send or starttls: true")
        return self


def ping_socket_kind(family: int = socket.AF_INET) -> int:
    """SOCK_DGRAM where unprivileged ping sockets work, else SOCK_RAW where allowed; PermissionError otherwise."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            socket.socket(family, kind, ICMP_PROTOCOL[family]).close()
        except PermissionError:
            continue
        return kind
    raise PermissionError(
        f"ICMP needs ping sockets (net.ipv4.ping_group_range must include gid {os.getgid()}) or raw sockets "
        "(root or CAP_NET_RAW)")


class IcmpProbe(Section):
    """Send one ICMP echo request; healthy when the reply comes within the timeout."""

    host: str = Field(min_length=1, description="Name or address pinged (IPv4 or IPv6).")
    payload_size: int = Field(56, ge=0, le=65000, description="Bytes of payload in the echo request.")

    @model_validator(mode="after")
    def _can_ping(self) -> IcmpProbe:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            ping_socket_kind(family)
        except PermissionError as exc:
            raise ValueError(str(exc)) from None
        return self


class GrpcProbe(Section):
    """Call the standard gRPC health service (grpc.health.v1.Health/Check); healthy when it answers SERVING."""

    address: HostPort = Field(description="HOST:PORT of the gRPC server.")
    service: str = Field("", description="The service asked about; empty asks about the server as a whole.")
    tls: bool = Field(False, description="Connect over TLS (verified; tls_config's ca_file and server_name apply).")
    tls_config: TlsConfig = Field(TlsConfig(), description="The CA and name to verify the server against.")

    @model_validator(mode="after")
    def _grpc_installed(self) -> GrpcProbe:
        if importlib.util.find_spec("grpc") is None or importlib.util.find_spec("grpc_health") is None:
            raise ValueError("gRPC checks need the grpc extra: pip install 'healwatch[grpc]' "
                             "(grpcio and grpcio-health-checking)")
        if self.tls_config.insecure_skip_verify or self.tls_config.min_days_left is not None:
            raise ValueError("gRPC checks verify TLS always and do not see the certificates: "
                             "insecure_skip_verify and min_days_left are for tcp and http checks")
        return self
