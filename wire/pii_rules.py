"""Structured PII by validated patterns, merged with the model's spans (pure functions).

The model tags names, places, organisations, addresses, dates and the like; values with a checkable structure are
found by rule, each candidate validated the way the field validates it:

- EMAIL_ADDRESS: a local part @ a dotted domain with a letter TLD.
- CREDIT_CARD: 12-19 digits with optional single spaces or hyphens; the Luhn checksum and an issuer range with its
  lengths (Visa, Mastercard, Amex, Discover/UnionPay, Diners, JCB, Maestro).
- IBAN_CODE: country code, 2 check digits, 11-30 alphanumerics; the ISO 13616 length of the country and mod 97.
- US_SSN: 3-2-4 digits with the same separator twice; SSA rules (area not 000, 666 or 9xx, group not 00, serial
  not 0000).
- IP_ADDRESS: a dotted quad or a colon-hex run that `ipaddress.ip_address` parses.
- PHONE_NUMBER: libphonenumber's matcher (`phonenumbers.PhoneNumberMatcher`, US default region) at `Leniency.VALID`
  (a number valid for its region), or at `Leniency.POSSIBLE` (US, GB, DE formats) for six digits or more right after
  a calling word ("call", "text", "phone", ...); an ISO date-time it reads as a number is dropped.

After the merge, a street address absorbs the town, region, country and postcode written right after it
(`address_blocks`), as presidio's data labels an address block. The calling-word phone rule and the address
blocks were chosen on the validation split (build 2e0609dbde2a897f, PII entity F1 at the 0.7 threshold 0.860 ->
0.883: phone 0.81 -> 0.99, street address 0.73 -> 0.88), with no PII-free training or validation prompt newly
flagged but phone numbers written as examples ("(555) 123-4567").

`merge` lets a rule's span win where it overlaps the model's (the model reads "078-05-1120" as a phone number or
cuts an IBAN short; the checksum decides), keeps every model span that no rule span overlaps, and, for the types in
`RULE_TYPES`, drops model spans no rule confirmed when `rule_only` says so (chosen on the validation split by the
build). The build's evaluation and the router call the same `detect`, so served quality is reported quality.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence

import phonenumbers

from wire.bio import Span, bio_to_spans, trim_span

__all__ = ["DEFAULT_THRESHOLD", "RULE_ONLY", "RULE_TYPES", "detect", "merge", "rule_spans", "scored"]

DEFAULT_THRESHOLD = 0.7
"""`classifier.pii_model.threshold` of VSR's configs and of deploy/config.yaml: the router acts on an entity whose
confidence reaches it; the build's held-out PII figures are taken at it too."""

RULE_TYPES = frozenset({"EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "PHONE_NUMBER"})
RULE_ONLY = RULE_TYPES - {"PHONE_NUMBER"}
"""Types whose model spans count only where a rule confirms them. Phone numbers are the exception: the world's
formats are many and libphonenumber's `VALID` leniency finds about a third of the training split's (presidio's
Faker numbers include partial ones like "94 51 71"), so the model's phone spans are kept beside the rule's."""

# Overlapping rule hits: the more specific check wins (an IBAN holds digit runs, an SSN reads as a phone number).
_PRIORITY = ("EMAIL_ADDRESS", "IBAN_CODE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE_NUMBER")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
_PHONE_CONTEXT = re.compile(
    r"\b(?:call|calls|called|calling|phone|tel|telephone|text|texted|sms|whatsapp|mobile|cell|fax|dial|ring|"
    r"reach|contact)\b",
    re.IGNORECASE,
)
_CONTEXT_REGIONS = ("US", "GB", "DE")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

# ISO 13616 IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
# Issuer prefixes (IIN ranges) with the lengths they issue: Visa, Mastercard, Amex, Discover/UnionPay, Diners, JCB
# (incl. the 15-digit 1800/2131 range), Maestro (12-19 digits).
_CARD_RANGES = (
    (re.compile(r"4"), (13, 16, 19)),
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), (16,)),
    (re.compile(r"3[47]"), (15,)),
    (re.compile(r"6(?:011|5|4[4-9]|2)"), (16, 17, 18, 19)),
    (re.compile(r"3(?:0[0-5]|[689])"), (14, 15, 16, 17, 18, 19)),
    (re.compile(r"35"), (16, 17, 18, 19)),
    (re.compile(r"1800|2131"), (15,)),
    (re.compile(r"5[06-9]|6\d"), tuple(range(12, 20))),
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _candidates(text: str) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "EMAIL_ADDRESS")
    for m in _IBAN.finditer(text):
        compact = m.group().replace(" ", "").upper()
        # the pattern is greedy over spaces: try the longest valid prefix (a word may follow the code)
        for end in range(len(compact), 14, -1):
            if _iban_ok(compact[:end]):
                stop, seen = m.start(), 0
                while seen < end:
                    seen += text[stop] != " "
                    stop += 1
                yield Span(m.start(), stop, "IBAN_CODE")
                break
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if any(p.match(digits) and len(digits) in n for p, n in _CARD_RANGES) and _luhn(digits):
            yield Span(m.start(), m.end(), "CREDIT_CARD")
    for m in _SSN.finditer(text):
        if _ssn_ok(m.group(1), m.group(3), m.group(4)):
            yield Span(m.start(), m.end(), "US_SSN")
    for m in _IPV4.finditer(text):
        if _is_ip(m.group()):
            yield Span(m.start(), m.end(), "IP_ADDRESS")
    for m in _IPV6.finditer(text):
        if m.group().count(":") >= 2 and _is_ip(m.group()):
            yield Span(m.start(), m.end(), "IP_ADDRESS")
    for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.VALID):
        if not _ISO_DATE.match(match.raw_string):  # "2023-04-03 01" is a timestamp, not a number to call
            yield Span(match.start, match.end, "PHONE_NUMBER")
    # A number in another region's format ("029 2018 0022", "94 51 71") counts where the words before it say it is
    # one to call or text; libphonenumber's POSSIBLE leniency (the right length for a region) and six digits or more
    # then suffice.
    for region in _CONTEXT_REGIONS if _PHONE_CONTEXT.search(text) else ():
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            before = text[max(0, match.start - 40) : match.start]
            n_digits = sum(c.isdigit() for c in match.raw_string)
            if n_digits >= 6 and _PHONE_CONTEXT.search(before) and not _ISO_DATE.match(match.raw_string):
                yield Span(match.start, match.end, "PHONE_NUMBER")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _compatible(text: str) -> tuple[str, list[int]]:
    """`text` with each character in Unicode NFKC form (a fullwidth e-mail address reads as the address it shows, as
    the served tokenizer reads it), and for each character of that the index of its source character."""
    if text.isascii():
        return text, list(range(len(text)))
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        form = unicodedata.normalize("NFKC", ch)
        out.append(form)
        index += [i] * len(form)
    return "".join(out), index


def rule_spans(text: str) -> list[Span]:
    """Validated structured-PII spans of `text`, non-overlapping (on overlap the type earlier in `_PRIORITY` wins,
    then the longer span). Matched on the NFKC form of each character; spans index `text` as given."""
    compatible, index = _compatible(text)
    found = _candidates(compatible)
    if compatible is not text:
        found = (Span(index[s.start], index[s.end - 1] + 1, s.entity_type) for s in found if s.end > s.start)
    ranked = sorted(found, key=lambda s: (_PRIORITY.index(s.entity_type), -(s.end - s.start), s.start))
    kept: list[Span] = []
    for span in ranked:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(trim_span(text, s) for s in kept)  # the punctuation rule of every span: "(020) 66" -> "020) 66"


def detect(
    text: str, offsets: Sequence[tuple[int, int]], tags: Sequence[str], rules: Sequence[Span] | None = None
) -> list[Span]:
    """The PII spans of `text`: the model's BIO tags decoded (`bio_to_spans`, `trim_span`) merged with the rule
    spans (`merge`, `RULE_ONLY`; `rules`: `rule_spans(text)` when the caller has them already). The one decoder of
    the build's evaluation and the router."""
    model = [s for s in (trim_span(text, x) for x in bio_to_spans(offsets, tags, text)) if s.start < s.end]
    return merge(model, rule_spans(text) if rules is None else rules, RULE_ONLY, text)


def scored(
    text: str,
    offsets: Sequence[tuple[int, int]],
    tags: Sequence[str],
    probs: Sequence[float],
    rules: Sequence[Span] | None = None,
) -> list[tuple[Span, float]]:
    """`detect`'s spans with a confidence each: 1.0 for a span a rule found and validated; for a model span, the
    mean of its tokens' tag probabilities (the `aggregation_strategy="simple"` rule of Hugging Face's
    token-classification pipeline), so one uncertain sub-word in a long span does not hide an entity every other
    piece is sure of. `probs[i]` is token i's probability of its tag."""
    rules = rule_spans(text) if rules is None else rules
    ruled = set(rules)
    out = []
    for span in detect(text, offsets, tags, rules):
        if span in ruled:
            out.append((span, 1.0))
            continue
        inside = [float(probs[i]) for i, (a, b) in enumerate(offsets) if a < b and a < span.end and b > span.start]
        out.append((span, sum(inside) / len(inside) if inside else 0.0))
    return out


def merge(
    model: Sequence[Span], rules: Sequence[Span], rule_only: frozenset[str] = RULE_TYPES, text: str | None = None
) -> list[Span]:
    """Rule spans, plus the model's spans that overlap none of them; a model span whose type is in `rule_only` is
    kept only where a rule confirmed it (then the rule's span stands in its place). With `text`, `address_blocks`."""
    out = list(rules)
    for span in model:
        if span.entity_type in rule_only:
            continue
        if all(span.end <= r.start or span.start >= r.end for r in rules):
            out.append(span)
    return sorted(out) if text is None else address_blocks(sorted(out), text)


_ADDRESS_PARTS = frozenset({"STREET_ADDRESS", "GPE", "ZIP_CODE"})


def address_blocks(spans: Sequence[Span], text: str) -> list[Span]:
    """A street address runs on through the town, region, country and postcode written right after it (separated
    only by spaces, commas or line breaks), as presidio's data labels a whole address block one STREET_ADDRESS:
    "081 Ctra. Hornos 3" + ", Victoria" + ", Canada" is one address. Chosen on the validation split."""
    out: list[Span] = []
    for span in spans:
        last = out[-1] if out else None
        if (
            last is not None
            and last.entity_type == "STREET_ADDRESS"
            and span.entity_type in _ADDRESS_PARTS
            and last.end <= span.start
            and text[last.end : span.start].strip(" ,\n\t") == ""
        ):
            out[-1] = Span(last.start, span.end, "STREET_ADDRESS")
        else:
            out.append(span)
    return out
