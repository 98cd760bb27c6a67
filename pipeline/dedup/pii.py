"""PII scrubbing as FineWeb does it: e-mail addresses and public IP addresses become dummy values.

datatrove's `PIIFormatter` cycles through its dummy values with a counter, so the value a match gets
depends on what the process saw before. tokenmill picks among the same dummies by a hash of the
matched string: the same address always gets the same dummy, in every process, partition and rerun.
A match that already is one of the dummies is left alone, so scrubbing twice changes nothing more.

FineWeb (datatrove) scrubs IPv4 only. tokenmill applies the same policy to IPv6: a globally routable
address becomes one of a few dummies drawn from the documentation prefix 2001:db8::/32, which the
scrubber itself leaves alone, so its output is stable under a second pass as well.

Phone numbers (off by default, as in FineWeb) become one fixed dummy from the range NANP reserves for
fiction. The patterns favour precision on web text; see each one's comment for what it leaves out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

# datatrove's dummies: example.com/org are reserved for examples; the IPs did not answer pings when
# datatrove drew them.
EMAIL_DUMMIES = ("email@example.com", "firstname.lastname@example.org")
IP_DUMMIES = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)
# RFC 3849's documentation prefix, in the shapes real addresses take: short, long, host part only.
IPV6_DUMMIES = (
    "2001:db8::1",
    "2001:db8:85a3::8a2e:370:7334",
    "2001:db8:0:1::53",
    "2001:db8:a0b:12f0::1",
    "2001:db8:4006:812::200e",
    "2001:db8:1f70:999:de8:7648:3a49:6e8",
)
PHONE_DUMMY = "555-0100"
PII_KINDS = ("email", "ip", "ipv6", "phone")

# ASCII digits only, as `ipaddress` wants: a dotted quad of other scripts' digits ("٨.٨.٨.٨") matched
# Python's \d and crashed the scrubber. No leading zeros: ipaddress rejects them too.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_HEXTET = r"[0-9A-Fa-f]{1,4}"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"

# An RFC 5321 dot-atom local part, then a domain of at least two labels or an IPv4 address literal.
# Not matched: quoted local parts ("a b"@x.org), IPv6 literals, and single-label domains (user@localhost,
# test@io), which in web text are far more often handles or code than addresses. The match may not
# start inside a run of address characters and dots, except after a quote that opens the run
# ('me@x.org'). That also keeps the search linear: retrying after every dot or quote of "a.a.a..." or
# "a'a'a..." takes quadratic time. The domain may not continue with a letter, digit, hyphen or ".label"
# (a sentence's final period may follow it).
_EMAIL = re.compile(
    rf"""
    (?<![A-Za-z0-9!#$%&*+/=?^_{{|}}~.-]) (?<![A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]['`]) (?!['`])
    {_ATEXT}+ (?:\.{_ATEXT}+)*
    @ (?: (?:{_LABEL}\.)+{_LABEL} | \[{_IPV4}\] )
    (?![\w-]|\.[A-Za-z0-9])
    """,
    re.VERBOSE,
)

# Four dotted octets that are not part of a longer dotted number or a word: 1.2.3.4.5, v1.2.3.4 and
# 999.999.999.999 are not addresses; "8.8.8.8." at the end of a sentence, "8.8.8.8:53" and "/24" are.
_IP = re.compile(rf"(?<![\w.]){_IPV4}(?![\w]|\.\d)")
# Every IPv4 match holds a digit, a dot, two runs of 1..3 digits between dots and a digit. Looking for
# that alone is 3x faster than the address pattern, whose lookbehind is tried at every position, and
# web text rarely has it, so most documents skip the address pattern altogether.
_IPV4_HINT = re.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")

# IPv6 candidates, in every notation RFC 4291 allows: eight groups, or groups on either side of one
# "::", either possibly ending in a dotted quad (::ffff:8.8.8.8); any case, leading zeros or not. The
# pattern only finds candidates (it accepts too many groups); `ipaddress` decides. A candidate starts
# after neither a word character, a dot nor a colon, so it is never the tail of a longer run (an
# 8-group piece of a 16-group fingerprint), except after the "IPv6:" tag of a mail address literal
# ([IPv6:2a01:4f8::2]). It may not continue with a word character, a colon or ".digit". Times
# (12:30:45) and MAC addresses (00:1a:2b:3c:4d:5e) have no "::" and too few groups, so they are no
# candidates; C++ and CSS names (std::vector, a::before) fail the boundaries. A zone index ("%eth0")
# is not part of the match: zones are for link-local addresses, which are kept, and they name a local
# interface, not a host. Every candidate opens with at most four hex digits and a colon; testing that
# first makes the search 4x faster on text without addresses.
# A candidate holds "::" or is eight groups (seven colons; six before a dotted quad): text with neither
# (nearly all text, colons of prose and times included) skips the search (`_may_hold_ipv6`).
_IPV6 = re.compile(
    rf"""
    (?=[0-9A-Fa-f]{{0,4}}:)
    (?: (?<![\w:.]) | (?<=[Ii][Pp][Vv]6:) )
    (?: (?:{_HEXTET}:){{6}} (?: {_HEXTET}:{_HEXTET} | {_IPV4} )
      | (?:{_HEXTET}(?::{_HEXTET}){{0,6}})? ::
        (?: (?:{_HEXTET}:){{0,5}}{_IPV4} | {_HEXTET}(?::{_HEXTET}){{0,6}} )?
    )
    (?![\w:]|\.\d)
    """,
    re.VERBOSE,
)
# Unicast addresses are allocated from 2000::/3 only; outside it lie the unspecified and loopback
# addresses, unique-local fc00::/7 (IPv6's RFC 1918), link-local fe80::/10, multicast ff00::/8,
# unassigned space and the forms that embed an IPv4 address. Of those, IPv4-mapped ::ffff:0:0/96 is
# judged by its IPv4 address; in the others (NAT64 64:ff9b::8.8.8.8, the deprecated ::8.8.8.8) a
# dotted quad is left to the IPv4 pass. 3fff::/20 was set aside for documentation in 2024 (RFC 9637),
# after the tables of the Pythons tokenmill supports, so it is named here.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_DOCUMENTATION_2024 = ipaddress.IPv6Network("3fff::/20")

# North American: optional +1, area code and exchange starting 2-9, separators optional ("(425)
# 882-9090", "425.882.9090", "4258829090"). International: "+" and a country code, then 2 to 6 digit
# groups, optionally one parenthesized trunk or area group ("+32 (0)2 790 75 85"), 8 to 15 digits in
# all (E.164). National with a trunk 0 ("020 7946 0958", "052 5552606"): at least one separator and
# 10 or 11 digits, which keeps 9-digit identifiers (SSNs, "078-05-1121") and dates out.
_PHONE = re.compile(
    r"""
    (?<![\w+.-])
    (?: (?P<nanp> (?:\+?1[ .-]?)? (?:\([2-9]\d\d\)|[2-9]\d\d) [ .-]? [2-9]\d\d [ .-]? \d{4} )
      | (?P<international> \+[1-9]\d{0,2} (?:[ .-]?\(\d{1,4}\))? (?:[ .-]?\d{1,5}){2,6} )
      | (?P<national> \(?0\d{1,4}\)? [ .-] \d{2,4} (?:[ .-]?\d{2,4}){1,3} )
    )
    (?![\w]|[.-]\d)
    """,
    re.VERBOSE,
)
_PHONE_DIGITS = {"nanp": (10, 11), "international": (8, 15), "national": (10, 11)}


@dataclass(frozen=True)
class PIIConfig:
    emails: bool = True
    ips: bool = True  # IPv4 and IPv6
    phones: bool = False


DEFAULT_CONFIG = PIIConfig()


def scrub(text: str, config: PIIConfig = DEFAULT_CONFIG) -> tuple[str, dict[str, int]]:
    """The text with PII replaced, and the number of replacements by kind (`PII_KINDS`: every kind is
    present, 0 when off). E-mails go first, as in datatrove, so an address literal (me@[8.8.8.8])
    counts as one e-mail, not an IP. IPv6 goes before IPv4, so an IPv4-mapped address
    (::ffff:8.8.8.8) is judged once, whole, and counted as "ipv6"."""
    counts = dict.fromkeys(PII_KINDS, 0)
    if config.emails and "@" in text:
        text = _substitute(_EMAIL, text, _email_dummy, counts, "email")
    if config.ips:
        if _may_hold_ipv6(text):
            text = _substitute(_IPV6, text, _ipv6_dummy, counts, "ipv6")
        if _IPV4_HINT.search(text):
            text = _substitute(_IP, text, _ip_dummy, counts, "ip")
    if config.phones:
        text = _substitute(_PHONE, text, _phone_dummy, counts, "phone")
    return text, counts


def _may_hold_ipv6(text: str) -> bool:
    """False only for text in which `_IPV6` cannot match: without "::" and with fewer than 6 colons."""
    return "::" in text or text.count(":") >= 6


def _substitute(
    pattern: re.Pattern[str],
    text: str,
    dummy_for: Callable[[re.Match[str]], str | None],
    counts: dict[str, int],
    kind: str,
) -> str:
    """Replace each match for which `dummy_for` gives a value (None keeps the match), counting them."""

    def replace(match: re.Match[str]) -> str:
        dummy = dummy_for(match)
        if dummy is None:
            return match.group()
        counts[kind] += 1
        return dummy

    return pattern.sub(replace, text)


def _pick(dummies: tuple[str, ...], matched: str) -> str:
    """A dummy chosen by a stable hash of the matched string (never Python's per-process `hash`)."""
    digest = hashlib.blake2b(matched.encode(), digest_size=8).digest()
    return dummies[int.from_bytes(digest, "little") % len(dummies)]


def _email_dummy(match: re.Match[str]) -> str | None:
    address = match.group()
    return None if address in EMAIL_DUMMIES else _pick(EMAIL_DUMMIES, address)


def _ip_dummy(match: re.Match[str]) -> str | None:
    address = match.group()
    return _pick(IP_DUMMIES, address) if _is_personal_ipv4(address) else None


def _is_personal_ipv4(address: str) -> bool:
    """Only globally routable unicast addresses are personal: private, loopback, link-local, shared
    (100.64/10), documentation, benchmarking, reserved and multicast ranges stay. `is_global` follows
    the IANA special-purpose registry as the running Python's `ipaddress` knows it."""
    ip = ipaddress.IPv4Address(address)
    return ip.is_global and not ip.is_multicast and address not in IP_DUMMIES


def _ipv6_dummy(match: re.Match[str]) -> str | None:
    """A globally routable unicast address gets an IPv6 dummy, picked by its canonical form so that
    every notation of one address gets the same dummy. An IPv4-mapped address (::ffff:8.8.8.8,
    ::ffff:808:808) is the IPv4 host it embeds: the IPv4 rule decides, and the embedded address is
    replaced as the IPv4 pass would replace it, keeping the ::ffff: form."""
    try:
        ip = ipaddress.IPv6Address(match.group())
    except ValueError:  # the pattern accepts too many groups, a second "::", ...
        return None
    if ip.ipv4_mapped is not None:
        embedded = str(ip.ipv4_mapped)
        return f"::ffff:{_pick(IP_DUMMIES, embedded)}" if _is_personal_ipv4(embedded) else None
    if ip in _GLOBAL_UNICAST and ip.is_global and ip not in _DOCUMENTATION_2024:
        return _pick(IPV6_DUMMIES, ip.compressed)
    return None


def _phone_dummy(match: re.Match[str]) -> str | None:
    low, high = _PHONE_DIGITS[match.lastgroup]
    digits = sum(char.isdigit() for char in match.group())
    return PHONE_DUMMY if low <= digits <= high else None
