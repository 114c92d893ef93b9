"""PII data: presidio-evaluator synthetic sentences plus chatbot phrasings templated with Faker.

Both are split by template (presidio's template_id, our template index), so test sentences use sentence shapes
training never saw. Entity values come from Faker; labels are character spans, converted to BIO per tokenizer.
"""

from __future__ import annotations

import logging
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from build_engines.bio import Span, merge_adjacent
from build_engines.data.common import DataSplits, SourceInfo, split_by_group
from build_engines.data.labels import PII_ENTITY_TYPES

__all__ = ["CHAT_TEMPLATES", "PiiExample", "load_pii", "render_template", "unescape_newlines"]


@dataclass(frozen=True)
class PiiExample:
    text: str
    spans: tuple[Span, ...]
    source: str
    group: str


CHAT_TEMPLATES: tuple[str, ...] = (
    "Hi, my name is {PERSON} and I need help updating my billing address to {STREET_ADDRESS}.",
    "Can you draft an email to {PERSON} at {EMAIL_ADDRESS} saying I'll be late on {DATE_TIME}?",
    "my ssn is {US_SSN}, is it safe to put it on this form?",
    "Please charge my card {CREDIT_CARD} for the annual plan.",
    "call me back at {PHONE_NUMBER} after 5pm",
    "I'm {AGE} years old and live in {GPE}. what retirement account should I open?",
    "Our server at {IP_ADDRESS} keeps refusing ssh connections, any idea why?",
    "Transfer 500 EUR to IBAN {IBAN_CODE} and note it as rent.",
    "My driver's license number is {US_DRIVER_LICENSE}, can you check whether it is expired?",
    "Write a cover letter for a job at {ORGANIZATION}, signed {PERSON}.",
    "The shipment goes to {STREET_ADDRESS}, {GPE} {ZIP_CODE}.",
    "is {DOMAIN_NAME} a phishing site? I got a link from {EMAIL_ADDRESS}",
    "Summarize this: {PERSON} ({EMAIL_ADDRESS}, {PHONE_NUMBER}) complained about order 1187 on {DATE_TIME}.",
    "translate to spanish: dear {PERSON}, your appointment is on {DATE_TIME}.",
    "As a {NRP} citizen, do I need a visa to visit {GPE}?",
    "Fix the grammar: me and {PERSON} went to {ORGANIZATION} yesterday and met the manager",
    "here's my info for the form - name: {PERSON}, dob: {DATE_TIME}, ssn: {US_SSN}",
    "Why was my payment with card ending {CREDIT_CARD} declined?",
    "Remind me to call {PERSON} on {PHONE_NUMBER} tomorrow morning.",
    "I work at {ORGANIZATION} in {GPE}; draft a resignation letter for me.",
    "whitelist {IP_ADDRESS} and {IP_ADDRESS} in the firewall config",
    "My account {IBAN_CODE} was charged twice by {ORGANIZATION}.",
    "Can you find a pharmacy near {STREET_ADDRESS}?",
    "Send the contract to {EMAIL_ADDRESS} and cc {PERSON}.",
    "My son is {AGE} and wants to apply to {ORGANIZATION}; what should he write?",
    "The email from {DOMAIN_NAME} asked for my license {US_DRIVER_LICENSE}. Is that normal?",
    "Update my profile: phone {PHONE_NUMBER}, zip {ZIP_CODE}.",
    "I'm {PERSON}, born {DATE_TIME}, please verify my identity",
    "Write a birthday message for {PERSON}, who turns {AGE} on {DATE_TIME}.",
    "How do I report a stolen card? the number was {CREDIT_CARD}",
    "{PERSON} from {ORGANIZATION} wants a quote; reply to {EMAIL_ADDRESS}",
    "book a table for two in {GPE} on {DATE_TIME} under the name {PERSON}",
    "Is this ssn valid: {US_SSN}?",
    "my landlord {PERSON} at {STREET_ADDRESS} won't return my deposit, what can I do?",
    "Ping {IP_ADDRESS} and tell me if {DOMAIN_NAME} resolves.",
    "Please wire the refund to {IBAN_CODE}, account holder {PERSON}.",
    "Our {NRP} customers in {GPE} complain about shipping delays.",
    "Fill in: Name {PERSON}; License {US_DRIVER_LICENSE}; Address {STREET_ADDRESS}; Phone {PHONE_NUMBER}",
    "hey it's {PERSON}, text me at {PHONE_NUMBER} when you land",
    "What time is it in {GPE} when it's {DATE_TIME} here?",
    "Can you check why {EMAIL_ADDRESS} stopped receiving our newsletter?",
    "I moved to {STREET_ADDRESS}, {GPE}. How do I change my voter registration?",
    "My phone number changed to {PHONE_NUMBER}, please update it on file.",
    "Generate a polite reminder to {PERSON} that the invoice from {ORGANIZATION} is due {DATE_TIME}.",
    "Someone used my SSN {US_SSN} to open a credit line. What are my next steps?",
    "The login attempts came from {IP_ADDRESS}; should I block that address?",
    "please verify the card {CREDIT_CARD}, exp 09/27",
    "What's the routing for IBAN {IBAN_CODE}? The payment keeps bouncing.",
    "I'm a {AGE}-year-old {NRP} student applying to universities in {GPE}.",
    "Write a LinkedIn recommendation for {PERSON}, my manager at {ORGANIZATION}.",
    "DL# {US_DRIVER_LICENSE} issued {DATE_TIME} - can I still rent a car with it?",
    "forward all mail for {DOMAIN_NAME} to {EMAIL_ADDRESS}",
    "My grandmother {PERSON} is {AGE} and lives alone at {STREET_ADDRESS}. What home care options exist?",
    "cancel the order shipped to zip {ZIP_CODE} under {PERSON}",
    "Create a contact card: {PERSON}, {PHONE_NUMBER}, {EMAIL_ADDRESS}, {STREET_ADDRESS}",
    "I got a text from {PHONE_NUMBER} claiming to be {ORGANIZATION}. Scam?",
    "Set up the VPN so that {IP_ADDRESS} routes through the office gateway.",
    "Rewrite this more formally: hey {PERSON}, can u send the report by {DATE_TIME}?",
    "We're hiring in {GPE}; draft a job post for {ORGANIZATION} with contact {EMAIL_ADDRESS}.",
    "is it legal for my employer to ask for my SSN ({US_SSN}) on a chat form?",
    "my card number {CREDIT_CARD} shows a charge from {ORGANIZATION} I didn't make",
    "Help me write a complaint letter to my bank about the transfer to {IBAN_CODE} on {DATE_TIME}.",
    "Tell {PERSON} I'll meet her at {STREET_ADDRESS} at {DATE_TIME}.",
    "What documents does a {NRP} national need to work in {GPE}?",
    "Register the domain {DOMAIN_NAME} for {ORGANIZATION}.",
    "The patient, {PERSON}, age {AGE}, was admitted on {DATE_TIME}. Summarize the notes.",
    "Why does {DOMAIN_NAME} resolve to {IP_ADDRESS} only from our office?",
    "My license {US_DRIVER_LICENSE} was suspended; how do I appeal in {GPE}?",
    "Sign me up for the newsletter: {EMAIL_ADDRESS}, zip code {ZIP_CODE}",
)

_SLOT = re.compile(r"\{([A-Z_]+)\}")
# Some presidio templates write "{building_number} {street}" as two STREET_ADDRESS spans; one address is one entity.
_ONE_ADDRESS = frozenset({"STREET_ADDRESS"})
_NRP = (
    "American",
    "Canadian",
    "Mexican",
    "German",
    "French",
    "Indian",
    "Chinese",
    "Japanese",
    "Brazilian",
    "Nigerian",
    "Kenyan",
    "Italian",
    "Spanish",
    "Polish",
    "Irish",
    "Muslim",
    "Christian",
    "Jewish",
    "Hindu",
)


def _value_makers(seed: int) -> dict[str, Callable[[], str]]:
    from faker import Faker

    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    fake.seed_instance(seed)
    us = fake["en_US"]
    rng = random.Random(seed)
    return {
        "PERSON": lambda: rng.choice([fake.name(), us.first_name(), f"{us.first_name()} {us.last_name()}"]),
        "EMAIL_ADDRESS": lambda: rng.choice([fake.email(), us.free_email(), us.company_email()]),
        "PHONE_NUMBER": lambda: rng.choice([us.phone_number(), fake.phone_number()]),
        "US_SSN": us.ssn,
        "CREDIT_CARD": lambda: us.credit_card_number(),
        "STREET_ADDRESS": lambda: rng.choice([fake.street_address(), us.street_address()]),
        "GPE": lambda: rng.choice([us.city(), us.state(), fake.country(), fake.city()]),
        "ORGANIZATION": fake.company,
        "DATE_TIME": lambda: rng.choice(
            [
                us.date(),
                us.date(pattern="%B %d, %Y"),
                us.day_of_week(),
                us.date(pattern="%d/%m/%Y"),
                f"{us.month_name()} {rng.randint(1, 28)}",
                f"{us.day_of_week()} at {rng.randint(1, 12)}pm",
            ]
        ),
        "IP_ADDRESS": lambda: rng.choice([us.ipv4(), us.ipv4_private(), us.ipv6()]),
        "IBAN_CODE": lambda: rng.choice([fake["de_DE"].iban(), fake["fr_FR"].iban(), fake["en_GB"].iban()]),
        "US_DRIVER_LICENSE": lambda: us.bothify(
            rng.choice(["?#######", "?###-####-####", "#########", "??######"])
        ).upper(),
        "AGE": lambda: str(rng.randint(16, 95)),
        "ZIP_CODE": us.zipcode,
        "DOMAIN_NAME": us.domain_name,
        "NRP": lambda: rng.choice(_NRP),
    }


def render_template(template: str, makers: dict[str, Callable[[], str]]) -> tuple[str, tuple[Span, ...]]:
    """Fill each `{TYPE}` slot with a fresh value and record its character span."""
    parts: list[str] = []
    spans: list[Span] = []
    cursor = 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[cursor : match.start()]
        parts.append(literal)
        length += len(literal)
        value = makers[match.group(1)]()
        spans.append(Span(length, length + len(value), match.group(1)))
        parts.append(value)
        length += len(value)
        cursor = match.end()
    parts.append(template[cursor:])
    return "".join(parts), tuple(spans)


def _presidio_sentences(n: int, seed: int) -> list[PiiExample]:
    logging.getLogger("presidio-evaluator").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from presidio_evaluator.data_generator import PresidioSentenceFaker

        faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=seed)
        samples = faker.generate_new_fake_sentences(n)
    keep = set(PII_ENTITY_TYPES)
    out = []
    for sample in samples:
        kept = [Span(s.start_position, s.end_position, s.entity_type) for s in sample.spans if s.entity_type in keep]
        text, spans = unescape_newlines(sample.full_text, kept)
        spans = merge_adjacent(text, spans, _ONE_ADDRESS)
        out.append(PiiExample(text, tuple(spans), "presidio-evaluator", f"presidio:{sample.template_id}"))
    return out


def unescape_newlines(text: str, spans: list[Span]) -> tuple[str, list[Span]]:
    """Turn the literal backslash-n of some presidio templates into newlines, moving span offsets to match."""
    escaped = "\\n"
    if escaped not in text:
        return text, spans

    def moved(position: int) -> int:
        return position - text.count(escaped, 0, position)

    return text.replace(escaped, "\n"), [Span(moved(s.start), moved(s.end), s.entity_type) for s in spans]


def _chat_sentences(templates: list[tuple[int, str]], per_template: int, seed: int) -> list[PiiExample]:
    makers = _value_makers(seed)
    rng = random.Random(seed)
    out = []
    for index, template in templates:
        for _ in range(per_template):
            text, spans = render_template(template, makers)
            if rng.random() < 0.15:
                text = text.lower()
            out.append(PiiExample(text, spans, "faker-chat-templates", f"chat:{index}"))
    return out


def _types(template: str) -> set[str]:
    return set(_SLOT.findall(template))


def _cover_every_type(
    train: list[tuple[int, str]], test: list[tuple[int, str]]
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Move train templates to test until every entity type is tested, keeping each type in train."""
    train, test = list(train), list(test)
    for entity in sorted(set().union(*(_types(t) for _, t in train + test))):
        if any(entity in _types(t) for _, t in test):
            continue
        for candidate in train:
            others = [t for t in train if t is not candidate]
            if entity in _types(candidate[1]) and all(
                any(e in _types(o) for _, o in others) for e in _types(candidate[1])
            ):
                train.remove(candidate)
                test.append(candidate)
                break
    return train, test


def load_pii(*, seed: int, val_fraction: float, presidio_n: int = 4000, per_template: int = 40) -> DataSplits:
    """Train/val/test PII sentences; test templates (both sources) are never seen in training."""
    presidio = _presidio_sentences(presidio_n, seed)
    presidio_train, presidio_test = split_by_group(presidio, lambda r: r.group, 0.2, seed)
    templates = list(enumerate(CHAT_TEMPLATES))
    chat_train_t, chat_test_t = _cover_every_type(*split_by_group(templates, lambda t: str(t[0]), 0.25, seed))
    chat_train = _chat_sentences(chat_train_t, per_template, seed)
    chat_test = _chat_sentences(chat_test_t, per_template // 2, seed + 1)
    train, val = split_by_group(presidio_train + chat_train, lambda r: r.group, val_fraction, seed + 3)
    sources = [
        SourceInfo(
            "presidio-evaluator 0.3.2 PresidioSentenceFaker",
            "MIT",
            f"{presidio_n} sentences, split by template",
        ),
        SourceInfo(
            "Faker-templated chatbot phrasings (this project)",
            "Apache-2.0; Faker MIT",
            f"{len(CHAT_TEMPLATES)} templates, split by template",
        ),
    ]
    return DataSplits(train=train, val=val, test=presidio_test + chat_test, sources=sources)
