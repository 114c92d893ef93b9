"""Structured PII by validated patterns (wire/pii_rules.py) and its merge with the model's spans."""

from __future__ import annotations

import pytest

from wire.bio import Span
from wire.pii_rules import RULE_ONLY, detect, merge, rule_spans


def found(text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.entity_type) for s in rule_spans(text)]


def test_the_sql_insert_of_the_issue_gives_its_ssn_and_card() -> None:
    text = "Fix my SQL insert: INSERT INTO users VALUES ('Priya Raghunathan', '123-45-6789', '4111 1111 1111 1111');"
    assert found(text) == [("123-45-6789", "US_SSN"), ("4111 1111 1111 1111", "CREDIT_CARD")]


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("mail me at first.last+tag@mail.example.co.uk today", "first.last+tag@mail.example.co.uk", "EMAIL_ADDRESS"),
        ("card 5555-5555-5555-4444 exp 12/29", "5555-5555-5555-4444", "CREDIT_CARD"),
        ("amex 378282246310005", "378282246310005", "CREDIT_CARD"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
        ("iban gb82west12345698765432", "gb82west12345698765432", "IBAN_CODE"),
        ("server at 192.168.10.42 is down", "192.168.10.42", "IP_ADDRESS"),
        ("ping 2001:db8::8a2e:370:7334 now", "2001:db8::8a2e:370:7334", "IP_ADDRESS"),
        ("call +1 (415) 555-0134 tomorrow", "+1 (415) 555-0134", "PHONE_NUMBER"),
        ("ssn 536 22 1234 on file", "536 22 1234", "US_SSN"),
        # fullwidth letters read as NFKC, spans index the text as sent
        ("email me at ｊｏｈｎ@ｅｘａｍｐｌｅ.ｃｏｍ", "ｊｏｈｎ@ｅｘａｍｐｌｅ.ｃｏｍ", "EMAIL_ADDRESS"),
    ],
)
def test_validated_values_are_found(text: str, value: str, kind: str) -> None:
    assert (value, kind) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "IBAN DE89 3704 0044 0532 0130 01",  # mod 97 fails
        "ssn 666-12-3456 and 000-12-3456 and 123-00-4567",  # SSA never issues these
        "version 10.0.300.1 of the firmware",  # not an address: 300 > 255
        "the log at 2023-04-03 01:22 says",  # a timestamp, not a phone number
        "what is 12345 * 67890?",
        "order #48213 shipped",
    ],
)
def test_invalid_or_lookalike_values_are_not(text: str) -> None:
    assert found(text) == []


def test_merge_prefers_a_validated_rule_span_and_drops_unconfirmed_rule_types() -> None:
    text = "SSN 123-45-6789, Ann Lee, card 4111 1111 1111 1111, ref 0000 1111"
    rules = rule_spans(text)
    model = [
        Span(4, 15, "PHONE_NUMBER"),  # the model reads the SSN as a phone number: the rule's type wins
        Span(17, 24, "PERSON"),
        Span(58, 67, "CREDIT_CARD"),  # no rule confirms it: dropped
    ]
    out = [(text[s.start : s.end], s.entity_type) for s in merge(model, rules, RULE_ONLY)]
    assert out == [("123-45-6789", "US_SSN"), ("Ann Lee", "PERSON"), ("4111 1111 1111 1111", "CREDIT_CARD")]


def test_model_phone_numbers_stay_beside_the_rules() -> None:
    text = "ring me on 94 51 71"
    assert merge([Span(11, 19, "PHONE_NUMBER")], rule_spans(text), RULE_ONLY) == [Span(11, 19, "PHONE_NUMBER")]


def test_detect_decodes_model_tags_and_merges_the_rules() -> None:
    text = "Ann Lee 4111111111111111"
    offsets = [(0, 0), (0, 3), (4, 7), (8, 24), (0, 0)]
    tags = ["O", "B-PERSON", "I-PERSON", "O", "O"]
    assert detect(text, offsets, tags) == [Span(0, 7, "PERSON"), Span(8, 24, "CREDIT_CARD")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("I got a text from 029 2018 0022 claiming to be my bank", "029 2018 0022"),
        ("please call me at 94 51 71 tomorrow", "94 51 71"),
        ("reach me on (028) 9018 0568", "028) 9018 0568"),  # the span rule of every span drops the "("
    ],
)
def test_numbers_in_other_formats_count_after_a_calling_word(text: str, value: str) -> None:
    assert (value, "PHONE_NUMBER") in found(text)


@pytest.mark.parametrize(
    "text",
    ["the answer is 94 51 71", "what's the next number: 2, 6, 12, 20, 30?", "can my school search my phone? I'm 16"],
)
def test_digit_runs_without_a_calling_word_or_too_short_are_no_phone(text: str) -> None:
    assert [k for _, k in found(text)] == []


def test_an_address_runs_on_through_its_town_country_and_postcode() -> None:
    text = "Ship it to 081 Ctra. Hornos 3, Victoria, Canada 60651. Thanks, Ann Lee in Victoria"
    model = [
        Span(11, 29, "STREET_ADDRESS"),
        Span(31, 39, "GPE"),
        Span(41, 47, "GPE"),
        Span(48, 53, "ZIP_CODE"),
        Span(63, 70, "PERSON"),
        Span(74, 82, "GPE"),  # not right after an address: its own place
    ]
    out = [(text[s.start : s.end], s.entity_type) for s in merge(model, [], RULE_ONLY, text)]
    assert out == [
        ("081 Ctra. Hornos 3, Victoria, Canada 60651", "STREET_ADDRESS"),
        ("Ann Lee", "PERSON"),
        ("Victoria", "GPE"),
    ]
