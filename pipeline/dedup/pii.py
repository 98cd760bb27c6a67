"""PII scrubbing as FineWeb does it: e-mail addresses and public IPv4 addresses become dummy values.

datatrove's `PIIFormatter` cycles through its dummy values with a counter, so the value a match gets
depends on what the process saw before. tokenmill picks among the same dummies by a hash of the
matched string: the same address always gets the same dummy, in every process, partition and rerun.
A match that already is one of the dummies is left alone, so scrubbing twice changes nothing more.

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
PHONE_DUMMY = "555-0100"

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # no leading zeros: ipaddress rejects them too
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
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
    ips: bool = True
    phones: bool = False


DEFAULT_CONFIG = PIIConfig()


def scrub(text: str, config: PIIConfig = DEFAULT_CONFIG) -> tuple[str, dict[str, int]]:
    """The text with PII replaced, and the number of replacements by kind ("email", "ip", "phone";
    every kind is present, 0 when off). E-mails go first, as in datatrove, so an address literal
    (me@[8.8.8.8]) counts as one e-mail, not an IP."""
    counts = {"email": 0, "ip": 0, "phone": 0}
    if config.emails and "@" in text:
        text = _substitute(_EMAIL, text, _email_dummy, counts, "email")
    if config.ips:
        text = _substitute(_IP, text, _ip_dummy, counts, "ip")
    if config.phones:
        text = _substitute(_PHONE, text, _phone_dummy, counts, "phone")
    return text, counts


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
    """Only globally routable unicast addresses are personal: private, loopback, link-local, shared
    (100.64/10), documentation, benchmarking, reserved and multicast ranges stay. `is_global` follows
    the IANA special-purpose registry as the running Python's `ipaddress` knows it."""
    address = match.group()
    ip = ipaddress.IPv4Address(address)
    if not ip.is_global or ip.is_multicast or address in IP_DUMMIES:
        return None
    return _pick(IP_DUMMIES, address)


def _phone_dummy(match: re.Match[str]) -> str | None:
    low, high = _PHONE_DIGITS[match.lastgroup]
    digits = sum(char.isdigit() for char in match.group())
    return PHONE_DUMMY if low <= digits <= high else None
