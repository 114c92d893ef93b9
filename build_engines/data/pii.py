"""PII data: presidio-evaluator synthetic sentences plus chatbot phrasings templated with Faker.

Both are split by template (presidio's template_id, our template index), so test sentences use sentence shapes
training never saw. Entity values come from Faker; labels are character spans, converted to BIO per tokenizer.
"""

from __future__ import annotations

import logging
import random
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from build_engines.bio import Span, merge_adjacent
from build_engines.data.common import DataSplits, SourceInfo, split_by_group
from build_engines.data.labels import PII_ENTITY_TYPES

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
# address blocks, lower case without punctuation, values glued to hyphens, slashes and brackets. Slots other than
# the entity types (see `_SLOT_TYPES`): `{ADDRESS}` is a whole postal address (street, city, state or country,
# postcode; one or several lines) labelled as ONE STREET_ADDRESS, the way presidio-evaluator labels its
# `{{address}}` (most of its address sentences); a street followed by a city and zip on the same line, as in
# `CHAT_TEMPLATES`, stays STREET_ADDRESS, GPE, ZIP_CODE. `{TITLE}` is an unlabelled courtesy title ("Dr.") in front
# of a `{LAST_NAME}` or `{PERSON}`: presidio labels titles TITLE, never PERSON. `{NRP_PLURAL}`: "Danes", "Sikhs".
TRAIN_ONLY_TEMPLATES: tuple[str, ...] = (
    "ship it to\n{PERSON}\n{ADDRESS}",
    "Address:\n{ADDRESS}\nPhone: {PHONE_NUMBER}",
    "{PERSON}\n{ORGANIZATION}\n{ADDRESS}\n{EMAIL_ADDRESS}",
    "my address is {ADDRESS} can you tell me which county that is",
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
    # whole addresses, inline and as blocks
    "Please send the replacement card to {ADDRESS}, thanks",
    "{ORGANIZATION}\n\n{ADDRESS}\nTel: {PHONE_NUMBER}",
    "Best regards,\n{PERSON}\n{ADDRESS}\n{PHONE_NUMBER} (mobile)",
    "we used to live at {ADDRESS} before moving to {GPE}",
    # titles outside the name
    "Dear {TITLE} {LAST_NAME},\nthank you for your order with {ORGANIZATION}.",
    "I have an appointment with {TITLE} {LAST_NAME} on {DATE_TIME}, help me prepare questions",
    "please forward this to {TITLE} {PERSON} at {EMAIL_ADDRESS}",
    "write a short bio of {TITLE} {LAST_NAME}, a {AGE}-year-old teacher from {GPE}",
    # nationalities, religious and political groups, lower case and plural too
    "my wife is {NRP} and i am {NRP}; which citizenship can our baby get?",
    "{NRP_PLURAL} are a big part of our customers in {GPE}, translate the flyer for them",
    "Is it polite to wish a {NRP} coworker happy holidays?",
    "recommend a good {NRP} restaurant near {STREET_ADDRESS}",
    "Summarize the history of {NRP} immigration to {GPE}.",
    "we are {NRP_PLURAL} living in {GPE} and need help with the visa forms",
    "The {NRP} government raised taxes again; what does it mean for {ORGANIZATION}?",
    # organisations, phone numbers and people in more contexts
    "Compare the pension plans of {ORGANIZATION} and {ORGANIZATION}.",
    "{ORGANIZATION} rejected my application, draft a polite follow-up",
    "our supplier {ORGANIZATION} is late again, their invoice came from {EMAIL_ADDRESS}",
    "my number: {PHONE_NUMBER} (call after 6)",
    "Tel. {PHONE_NUMBER} / Fax {PHONE_NUMBER}",
    "{PERSON} can be reached on {PHONE_NUMBER} during office hours",
    "the reservation is for {PERSON}, party of 4, at {DATE_TIME}",
    "{PERSON} says the package to {GPE} {ZIP_CODE} never arrived",
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
# Slots whose values are labelled with another name's type, and slots whose values stay unlabelled.
_SLOT_TYPES = {"ADDRESS": "STREET_ADDRESS", "LAST_NAME": "PERSON", "NRP_PLURAL": "NRP"}
_UNLABELLED_SLOTS = frozenset({"TITLE"})
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
    """The values of `CHAT_TEMPLATES` as the validation and test rows are rendered: keep these makers as they are
    (their outputs ARE the held-out data). Known weakness, fixed in `_training_value_makers`: `fake.company` is
    bound once, so every ORGANIZATION of one render comes from one Faker locale. The training-only slots
    (`_extra_slot_makers`) draw from their own generators and leave these values unchanged."""
    from faker import Faker

    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    fake.seed_instance(seed)
    us = fake["en_US"]
    rng = random.Random(seed)
    return _extra_slot_makers(seed) | {
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


_TITLE_PREFIX = re.compile(
    r"^(?:(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Univ\.Prof|Dipl\.-Ing|Ing|Mag|Mme|Mlle|M)\.?\s+)+"
)
# Latin-script Faker locales for names, places, streets, phone numbers and companies from more countries (the
# presidio sentences draw theirs from FakeNameGenerator records of ~30 countries).
_WORLD_LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "da_DK", "sv_SE", "no_NO", "fi_FI", "hu_HU", "cs_CZ", "pl_PL", "it_IT",
    "es_ES", "pt_BR", "pt_PT", "nl_NL", "en_AU", "en_NZ", "en_CA", "en_IN", "sl_SI", "hr_HR", "fr_CH", "de_AT",
)  # fmt: skip
_TITLES = ("Mr.", "Mrs.", "Ms.", "Dr.", "Mr", "Mrs", "Ms", "Dr", "Prof.", "Miss", "mr.", "ms.", "dr.", "Mx.")
_RELIGIOUS_AND_POLITICAL = (
    ("Christian", "Christians"), ("Muslim", "Muslims"), ("Jewish", "Jews"), ("Hindu", "Hindus"),
    ("Buddhist", "Buddhists"), ("Sikh", "Sikhs"), ("Catholic", "Catholics"), ("Protestant", "Protestants"),
    ("Orthodox", "Orthodox Christians"), ("Mormon", "Mormons"), ("Evangelical", "Evangelicals"),
    ("Sunni", "Sunnis"), ("Shia", "Shias"), ("Democrat", "Democrats"), ("Republican", "Republicans"),
    ("Socialist", "Socialists"), ("Communist", "Communists"), ("Libertarian", "Libertarians"),
)  # fmt: skip
_NATIONALITIES = (
    ("American", "Americans"), ("Canadian", "Canadians"), ("Mexican", "Mexicans"), ("German", "Germans"),
    ("French", "French"), ("Indian", "Indians"), ("Chinese", "Chinese"), ("Japanese", "Japanese"),
    ("Brazilian", "Brazilians"), ("Nigerian", "Nigerians"), ("Kenyan", "Kenyans"), ("Italian", "Italians"),
    ("Spanish", "Spaniards"), ("Polish", "Poles"), ("Irish", "Irish"), ("Danish", "Danes"),
    ("Swedish", "Swedes"), ("Norwegian", "Norwegians"), ("Finnish", "Finns"), ("Dutch", "Dutch"),
    ("Czech", "Czechs"), ("Hungarian", "Hungarians"), ("Russian", "Russians"), ("Ukrainian", "Ukrainians"),
    ("Croatian", "Croatians"), ("Slovenian", "Slovenians"), ("Icelandic", "Icelanders"),
    ("Australian", "Australians"), ("Scottish", "Scots"), ("English", "English"), ("Welsh", "Welsh"),
    ("Turkish", "Turks"), ("Greek", "Greeks"), ("Egyptian", "Egyptians"), ("Moroccan", "Moroccans"),
    ("Vietnamese", "Vietnamese"), ("Korean", "Koreans"), ("Filipino", "Filipinos"), ("Pakistani", "Pakistanis"),
    ("Iranian", "Iranians"), ("Argentinian", "Argentinians"), ("Colombian", "Colombians"),
    ("Peruvian", "Peruvians"), ("Chilean", "Chileans"), ("Cuban", "Cubans"), ("Ethiopian", "Ethiopians"),
    ("Ghanaian", "Ghanaians"), ("Somali", "Somalis"), ("Portuguese", "Portuguese"), ("Austrian", "Austrians"),
    ("Swiss", "Swiss"), ("Belgian", "Belgians"), ("Romanian", "Romanians"), ("Bulgarian", "Bulgarians"),
    ("Serbian", "Serbs"), ("Thai", "Thais"), ("Indonesian", "Indonesians"), ("Israeli", "Israelis"),
    ("Palestinian", "Palestinians"), ("Lebanese", "Lebanese"), ("Syrian", "Syrians"), ("Iraqi", "Iraqis"),
    ("Afghan", "Afghans"), ("Bangladeshi", "Bangladeshis"), ("Chechen", "Chechens"), ("Kurdish", "Kurds"),
    ("Greenlandic", "Greenlanders"), ("Estonian", "Estonians"), ("Tunisian", "Tunisians"),
    ("South African", "South Africans"), ("Haitian", "Haitians"),
)  # fmt: skip
# presidio-evaluator's AddressProviderNew shapes (one STREET_ADDRESS each), weighted as there, plus European
# orderings; parts come from several locales.
_ADDRESS_FORMATS = (
    ("{street}\n{city}, {state_abbr} {postcode}", 25),
    ("{street}\n{city}\n, {state_abbr}\n {postcode}", 10),
    ("{street}\n{city}\n, {state_abbr}\n {country} {postcode}", 10),
    ("{number} {street_name}\n {secondary}\n {city}\n {country} {postcode}", 5),
    ("{number} {street_name} {secondary} {city} {state}", 5),
    ("{street}, {city}, {country}", 5),
    ("{street} {secondary}, {city}, {country} {postcode}", 5),
    ("{street}\n{postcode} {city}\n{country}", 10),
    ("{street}\n{city} {postcode}", 5),
    ("the corner of {street_name} and {street_name}", 3),
)


def _strip_title(name: str) -> str:
    stripped = _TITLE_PREFIX.sub("", name)
    return stripped if stripped.strip() else name


def _extra_slot_makers(seed: int) -> dict[str, Callable[[], str]]:
    """The training-only slots, from generators of their own (see `_value_makers`)."""
    from faker import Faker

    world = Faker(list(_WORLD_LOCALES))
    world.seed_instance(seed + 1000)
    us = world["en_US"]
    rng = random.Random(seed + 1000)

    def part(name: str) -> str:
        if name == "state_abbr":
            return us.state_abbr()
        if name == "state":
            return us.state()
        if name == "secondary":
            return us.secondary_address()
        if name == "number":
            return us.building_number()
        value: str = getattr(world, "street_address" if name == "street" else name)()
        return value.upper() if name == "city" and rng.random() < 0.1 else value

    formats = [f for f, _ in _ADDRESS_FORMATS]
    weights = [w for _, w in _ADDRESS_FORMATS]

    def address() -> str:
        template = rng.choices(formats, weights)[0]
        return re.sub(r"\{(\w+)\}", lambda m: part(m.group(1)), template)

    def plural() -> str:
        value = rng.choice(_NATIONALITIES + _RELIGIOUS_AND_POLITICAL)[1]
        return value.lower() if rng.random() < 0.2 else value

    return {
        "ADDRESS": address,
        "TITLE": lambda: rng.choice(_TITLES),
        "LAST_NAME": lambda: _strip_title(world.last_name()),
        "NRP_PLURAL": plural,
    }


def _training_value_makers(seed: int) -> dict[str, Callable[[], str]]:
    """Richer values for the TRAINING renders (training rows of `CHAT_TEMPLATES`, `TRAIN_ONLY_TEMPLATES`): names,
    places, streets, phone numbers and companies of ~24 locales; companies also from presidio-evaluator's list of
    real ones, a fresh locale per value; no title inside a PERSON (presidio labels titles apart); presidio's phone
    shapes (extensions, trunk prefixes in brackets, country codes); nationalities, religious and political groups,
    capitalised or not, adjectives and plurals."""
    from faker import Faker

    base = _value_makers(seed)
    world = Faker(list(_WORLD_LOCALES))
    world.seed_instance(seed + 2000)
    us = world["en_US"]
    rng = random.Random(seed + 2000)
    organizations, phone_formats = _presidio_value_lists()

    def person() -> str:
        first, last = world.first_name(), world.last_name()
        return rng.choice(
            [
                _strip_title(world.name()),
                _strip_title(base["PERSON"]()),
                first,
                f"{first} {last}",
                f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}{rng.choice(['. ', ' '])}{last}",
            ]
        )

    def organization() -> str:
        return rng.choice([world.company(), world.company(), rng.choice(organizations)])

    def phone() -> str:
        shape = rng.random()
        if shape < 0.4:
            return world.phone_number()
        if shape < 0.8:
            return us.numerify(rng.choice(phone_formats))
        return base["PHONE_NUMBER"]()

    def gpe() -> str:
        value = rng.choice([world.city(), world.city(), world.country(), us.state(), us.state_abbr(), base["GPE"]()])
        return value.upper() if rng.random() < 0.1 else value

    def nrp() -> str:
        value = rng.choice(_NATIONALITIES + _RELIGIOUS_AND_POLITICAL)[0]
        return value.lower() if rng.random() < 0.2 else value

    return base | {
        "PERSON": person,
        "ORGANIZATION": organization,
        "PHONE_NUMBER": phone,
        "GPE": gpe,
        "STREET_ADDRESS": lambda: rng.choice([world.street_address(), base["STREET_ADDRESS"]()]),
        "NRP": nrp,
    }


def _presidio_value_lists() -> tuple[list[str], list[str]]:
    """presidio-evaluator's company names and phone number shapes (the generator of the presidio sentences)."""
    import csv

    from presidio_evaluator.data_generator import raw_data_dir
    from presidio_evaluator.data_generator.faker_extensions.providers import PhoneNumberProviderNew

    with (raw_data_dir / "companies_and_organizations.csv").open(encoding="utf-8") as handle:
        organizations = [row["organization"].strip() for row in csv.DictReader(handle, delimiter="\t")]
    organizations = [o for o in organizations if o and not o.endswith("-")]
    return organizations, list(PhoneNumberProviderNew.formats)


def render_template(template: str, makers: dict[str, Callable[[], str]]) -> tuple[str, tuple[Span, ...]]:
    """Fill each `{TYPE}` slot with a fresh value and record its character span (typed by `_SLOT_TYPES`; none for
    `_UNLABELLED_SLOTS`)."""
    parts: list[str] = []
    spans: list[Span] = []
    cursor = 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[cursor : match.start()]
        parts.append(literal)
        length += len(literal)
        value = makers[match.group(1)]()
        if match.group(1) not in _UNLABELLED_SLOTS:
            spans.append(Span(length, length + len(value), _SLOT_TYPES.get(match.group(1), match.group(1))))
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


def _chat_sentences(
    templates: list[tuple[int, str]],
    per_template: int,
    seed: int,
    makers: Callable[[int], dict[str, Callable[[], str]]] = _value_makers,
) -> list[PiiExample]:
    values = makers(seed)
    rng = random.Random(seed)
    out = []
    for index, template in templates:
        for _ in range(per_template):
            text, spans = render_template(template, values)
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
    """Train/val/test PII sentences; test templates (both sources) are never seen in training.

    The splits of the first `presidio_n` presidio sentences and of `CHAT_TEMPLATES` do not depend on the other
    arguments, which only add training rows: `presidio_extra` more presidio sentences of training templates,
    `TRAIN_ONLY_TEMPLATES` renders, and all-O examples (`pii_free` prompts that pass `likely_pii_free`, e.g. the
    intent TRAINING prompts, plus `templated_pii_free` sentences of `NEGATIVE_TEMPLATES`).

    Validation and test rows keep the values of `_value_makers`; the training rows of `CHAT_TEMPLATES` and the
    `TRAIN_ONLY_TEMPLATES` renders take theirs from `_training_value_makers` (more locales and shapes).
    """
    presidio = _presidio_sentences(presidio_n, seed)
    presidio_train, presidio_test = split_by_group(presidio, lambda r: r.group, 0.2, seed)
    templates = list(enumerate(CHAT_TEMPLATES))
    chat_train_t, chat_test_t = _cover_every_type(*split_by_group(templates, lambda t: str(t[0]), 0.25, seed))
    chat_train = _chat_sentences(chat_train_t, per_template, seed)
    chat_test = _chat_sentences(chat_test_t, per_template // 2, seed + 1)
    train, val = split_by_group(presidio_train + chat_train, lambda r: r.group, val_fraction, seed + 3)
    # the training rows of the chat templates again, with the training makers' values (validation keeps its own)
    kept = {r.group for r in train}
    train = [r for r in train if r.source != "faker-chat-templates"] + _chat_sentences(
        [t for t in chat_train_t if f"chat:{t[0]}" in kept], per_template, seed, _training_value_makers
    )
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
                [(offset + i, t) for i, t in enumerate(TRAIN_ONLY_TEMPLATES)],
                train_only_per_template,
                seed + 7,
                _training_value_makers,
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
