"""PII data: presidio-evaluator synthetic sentences plus chatbot phrasings templated with Faker.

Both are split by template (presidio's template_id, our template index), so test sentences use sentence shapes
training never saw. Entity values come from Faker; labels are character spans, converted to BIO per tokenizer.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from build_engines.data.common import DataSplits, SourceInfo, split_by_group
from build_engines.data.labels import PII_ENTITY_TYPES
from wire.bio import Span, merge_adjacent

__all__ = [
    "CHAT_TEMPLATES",
    "NEGATIVE_TEMPLATES",
    "TRAIN_ONLY_TEMPLATES",
    "PiiExample",
    "likely_pii_free",
    "load_pii",
    "render_template",
    "unescape_newlines",
]


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

# Training-only chatbot phrasings (never split into test, so the held-out templates stay as they were): forms,
# multi-line address blocks labelled split (street, city and country as GPE, zip apart; presidio-evaluator's own
# `{{address}}` sentences mostly label the whole block as one STREET_ADDRESS, but training on that convention with
# re-rendered world-locale values scored lower on validation: entity F1 0.893 vs 0.920), lower case without
# punctuation, values glued to hyphens, slashes and brackets.
TRAIN_ONLY_TEMPLATES: tuple[str, ...] = (
    "ship it to\n{PERSON}\n{STREET_ADDRESS}\n{GPE}, {GPE} {ZIP_CODE}",
    "Address:\n{STREET_ADDRESS}\n{GPE}\n{GPE} {ZIP_CODE}\nPhone: {PHONE_NUMBER}",
    "{PERSON}\n{ORGANIZATION}\n{STREET_ADDRESS}\n{GPE} {ZIP_CODE}\n{EMAIL_ADDRESS}",
    "my address is {STREET_ADDRESS} {GPE} {ZIP_CODE} can you tell me which county that is",
    "Name: {PERSON}\nDOB: {DATE_TIME}\nPhone: {PHONE_NUMBER}\nEmail: {EMAIL_ADDRESS}",
    "name - {PERSON} / phone - {PHONE_NUMBER} / email - {EMAIL_ADDRESS}",
    "{PHONE_NUMBER}-mobile, {PHONE_NUMBER}-office",
    "contact {PERSON} ({PHONE_NUMBER}) or visit {DOMAIN_NAME} for details",
    "Go to {DOMAIN_NAME} and log in as {EMAIL_ADDRESS}",
    "i live in {GPE} near {STREET_ADDRESS} whats the best gym around",
    "pls help me write an apology to {PERSON} i missed her party on {DATE_TIME}",
    "{PERSON} -- {ORGANIZATION}, {GPE}",
    "Dear {PERSON},\n\nYour order will be delivered to {STREET_ADDRESS}, {GPE} {ZIP_CODE} by {DATE_TIME}.",
    "who should i contact at {ORGANIZATION} about my refund, my order was sent to {GPE} {ZIP_CODE}",
    "My {NRP} grandparents moved to {GPE} when they were {AGE}.",
    "CUSTOMER: {PERSON} | CARD: {CREDIT_CARD} | ZIP: {ZIP_CODE}",
    "the {NRP} community center at {STREET_ADDRESS} is hiring, how do I apply",
    "Can {ORGANIZATION} refuse to hire me because I'm {AGE}? I live in {GPE}.",
    "meeting with {PERSON} and {PERSON} at {DATE_TIME} in the {ORGANIZATION} office",
    "I was born in {GPE} on {DATE_TIME} and my ssn is {US_SSN}",
    "reply to {EMAIL_ADDRESS} with the invoice for {ORGANIZATION}, iban {IBAN_CODE}",
    "The server {IP_ADDRESS} at {DOMAIN_NAME} belongs to {ORGANIZATION}",
    "{PERSON}, {AGE}, {GPE}",
    "Translate: {PERSON} lives at {STREET_ADDRESS} in {GPE} and works for {ORGANIZATION}.",
    "LICENSE NO. {US_DRIVER_LICENSE} - EXP {DATE_TIME}",
    "my mom {PERSON} is {AGE} and her doctor in {GPE} wants her to take statins",
    # PII inside technical prompts: the all-O math/code sentences must not teach "digits near math are never PII"
    "ssn {US_SSN} - also, what is the integral of 3x^2 from 0 to 4?",
    "I'm {PERSON} (ssn {US_SSN}); can you check my tax math: 52,000 * 0.22 = 11,440?",
    "Here is my card {CREDIT_CARD}. Separately, factor x^2 - 5x + 6 for me.",
    "Email {EMAIL_ADDRESS} the result of 17 * 23 and the proof that sqrt(2) is irrational.",
    "call {PHONE_NUMBER} if the loop below still fails: for i in range(10): print(i ** 2)",
    "My social security number is {US_SSN}. How many ways can 4 people sit at a round table?",
    "Debug this for {PERSON}: def f(n): return n * f(n - 1)  # crashes at n = 0",
    "the server {IP_ADDRESS} returns 503 after 120 requests per second, how do I tune nginx worker_connections 1024?",
    "{PERSON}, age {AGE}, asks: what is the probability of rolling two sixes in 3 throws?",
    "Account {IBAN_CODE}: compound interest on 2,500 at 4.5% for 6 years?",
    "License {US_DRIVER_LICENSE}. Also: convert 72 degrees F to C and show the formula.",
    "Homework from {PERSON} ({EMAIL_ADDRESS}): simplify (2x + 4)/(x + 2) and evaluate at x = 7",
)

# PII-free sentences with the things a PII model must not take for entities: numbers, formulas, code, units,
# versions, prices, scores. `{N}` is a small number, `{D}` a decimal, `{Y}` a large number.
NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "solve {N}x + {N} = {Y}",
    "what is {N}% of {Y}?",
    "factor x^2 - {N}x + {N}",
    "Find the derivative of f(x) = {N}x^3 - {N}x^2 + {N} at x = {N}.",
    "compute the integral of {N}x^2 from 0 to {N}",
    "If a car travels {Y} km in {D} hours, what is its average speed?",
    "A ball is thrown upward at {N} m/s. How high does it go? Use g = 9.8 m/s^2.",
    "convert {Y} degrees fahrenheit to celsius",
    "what's {Y} divided by {N}",
    "Is {Y} a prime number?",
    "the sequence {N}, {N}, {N}, {N} - what comes next",
    "my python script crashes with IndexError on line {Y}, the list has {N} items",
    "upgrade numpy from {N}.{N}.{N} to {N}.{N}.{N}",
    "The docker container listens on port {Y} but curl localhost:{Y} times out",
    "allocate an array of size {Y} and fill it with zeros",
    "for i in range({N}, {Y}): print(i * {N})",
    "x = {N}; y = x ** {N} + {N}; what is y?",
    "SELECT name FROM users WHERE age > {N} LIMIT {N};",
    "The price went from ${D} to ${D}, what's the percent change?",
    "I have {N} apples and give away {N}, how many are left?",
    "A resistor of {Y} ohms carries {D} A. What is the voltage?",
    "a {N} kg block slides down a {N} degree incline with friction coefficient {D}",
    "what is the probability of rolling a sum of {N} with two dice",
    "Evaluate the limit as n goes to infinity of (1 + {N}/n)^n",
    "round {Y}.{N} to the nearest hundred",
    "a loan of ${Y} at {D}% interest for {N} years, what is the monthly payment",
    "How many moles are in {Y} g of water?",
    "the team won {N}-{N} and scored {N} goals in the second half",
    "Chapter {N}, exercise {N}.{N}: prove that the sum of the first n odd numbers is n^2",
    "pH of a {D} M HCl solution?",
    "my model gets {D} accuracy after {N} epochs with batch size {N}, why so low",
    "O(n log n) vs O(n^{N}) for n = {Y}",
    "What is {N}/{N} + {N}/{N} as a fraction?",
    "Matrix A = [[{N}, {N}], [{N}, {N}]]. Find its determinant and eigenvalues.",
    "git checkout -b fix-{Y} && git commit -m 'bump to v{N}.{N}'",
    "set max_connections = {Y} and timeout = {N}s in the config",
    "How long does it take to heat {N} liters of water by {N} degrees with a {Y} W heater?",
    "what's the area of a circle with radius {D} cm",
    "simplify ({N}x + {N})({N}x - {N})",
    "int main() { int a[{N}] = {0}; return a[{N}]; }",
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
    # presidio-evaluator also draws from the global `random` (middle initials, lower-casing, US state formats),
    # which `random_seed` does not seed: seed it here, and put the caller's state back afterwards.
    state = random.getstate()
    random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from presidio_evaluator.data_generator import PresidioSentenceFaker

            faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=seed)
            samples = faker.generate_new_fake_sentences(n)
    finally:
        random.setstate(state)
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


_NUMBER_SLOT = re.compile(r"\{([NDY])\}")
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|\b[A-E]\)\s*)$")
_CONTACT_LIKE = re.compile(r"@|https?:|www\.|\d{6,}")


def likely_pii_free(text: str) -> bool:
    """True for a prompt with no capitalised word inside a sentence (names, places, organisations: those stay
    out of PII-free examples), no e-mail or URL and no long digit run. Acronyms and sentence starts are fine."""
    if _CONTACT_LIKE.search(text):
        return False
    for match in _WORD.finditer(text):
        word = match.group()
        if word[0].isupper() and not word.isupper() and not _SENTENCE_START.search(text[: match.start()]):
            return False
    return True


def _negative_sentences(count: int, seed: int) -> list[PiiExample]:
    rng = random.Random(seed)
    makers: dict[str, Callable[[], str]] = {
        "N": lambda: str(rng.randint(0, 60)),
        "D": lambda: f"{rng.uniform(0.01, 99):.{rng.choice([1, 2])}f}",
        "Y": lambda: str(rng.randint(100, 99999)),
    }
    out = []
    for i in range(count):
        index = i % len(NEGATIVE_TEMPLATES)
        text = _NUMBER_SLOT.sub(lambda m: makers[m.group(1)](), NEGATIVE_TEMPLATES[index])
        out.append(PiiExample(text, (), "templated-pii-free", f"negative:{index}"))
    return out


# Faker draws dates relative to the wall clock ("the last 30 years up to now"), so without this the same seed gave
# other timestamps on every build. Any fixed instant will do.
_FAKER_NOW = datetime(2025, 6, 1, 12, 0, 0)


@contextlib.contextmanager
def _frozen_faker_clock() -> Iterator[None]:
    """Faker's date provider reads `datetime.now()`; pin it for the duration of data generation."""
    import faker.providers.date_time as faker_dates

    class _Pinned(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return _FAKER_NOW.replace(tzinfo=tz) if tz is not None else _FAKER_NOW

    original = faker_dates.__dict__["datetime"]
    setattr(faker_dates, "datetime", _Pinned)  # noqa: B010
    try:
        yield
    finally:
        setattr(faker_dates, "datetime", original)  # noqa: B010


@_frozen_faker_clock()
def load_pii(
    *,
    seed: int,
    val_fraction: float,
    presidio_n: int = 4000,
    per_template: int = 40,
    presidio_extra: int = 0,
    train_only_per_template: int = 0,
    pii_free: Sequence[str] = (),
    templated_pii_free: int = 0,
) -> DataSplits:
    """Train/val/test PII sentences; test templates (both sources) are never seen in training. Deterministic for
    a seed (Faker's clock is pinned while it runs).

    The splits of the first `presidio_n` presidio sentences and of `CHAT_TEMPLATES` do not depend on the other
    arguments, which only add training rows: `presidio_extra` more presidio sentences of training templates,
    `TRAIN_ONLY_TEMPLATES` renders, and all-O examples (`pii_free` prompts that pass `likely_pii_free`, e.g. the
    intent TRAINING prompts, plus `templated_pii_free` sentences of `NEGATIVE_TEMPLATES`).
    """
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
    train_groups = {r.group for r in train}
    if presidio_extra:
        extra = [r for r in _presidio_sentences(presidio_extra, seed + 101) if r.group in train_groups]
        train += extra
        sources.append(SourceInfo("presidio-evaluator, more sentences", "MIT", f"{len(extra)} of training templates"))
    if train_only_per_template:
        offset = len(CHAT_TEMPLATES)
        train += [
            PiiExample(r.text, r.spans, "faker-chat-templates-train-only", r.group)
            for r in _chat_sentences(
                [(offset + i, t) for i, t in enumerate(TRAIN_ONLY_TEMPLATES)], train_only_per_template, seed + 7
            )
        ]
        sources.append(
            SourceInfo(
                "Faker-templated chatbot phrasings, training only (this project)",
                "Apache-2.0; Faker MIT",
                f"{len(TRAIN_ONLY_TEMPLATES)} templates x {train_only_per_template}",
            )
        )
    free = [PiiExample(t, (), "pii-free-prompts", f"free:{i}") for i, t in enumerate(pii_free) if likely_pii_free(t)]
    free += _negative_sentences(templated_pii_free, seed + 11)
    if free:
        train += free
        sources.append(
            SourceInfo(
                "PII-free prompts (authored intent/benign TRAINING prompts without names; templated math/code)",
                "Apache-2.0 (this project)",
                f"{len(free)} all-O sentences, training only",
            )
        )
    return DataSplits(train=train, val=val, test=presidio_test + chat_test, sources=sources)
