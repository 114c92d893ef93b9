"""Label sets of the three classifiers (the names the router and VSR configs use)."""

from __future__ import annotations

__all__ = ["INTENT_LABELS", "JAILBREAK_LABELS", "PII_ENTITY_TYPES", "bio_tags"]

INTENT_LABELS: tuple[str, ...] = (
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
)

JAILBREAK_LABELS: tuple[str, ...] = ("benign", "jailbreak")

PII_ENTITY_TYPES: tuple[str, ...] = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "CREDIT_CARD",
    "STREET_ADDRESS",
    "GPE",
    "ORGANIZATION",
    "DATE_TIME",
    "IP_ADDRESS",
    "IBAN_CODE",
    "US_DRIVER_LICENSE",
    "AGE",
    "ZIP_CODE",
    "DOMAIN_NAME",
    "NRP",
)


def bio_tags(entity_types: tuple[str, ...] = PII_ENTITY_TYPES) -> tuple[str, ...]:
    """`O`, then `B-X`, `I-X` for each type, in a fixed order (tag id = index)."""
    return ("O", *(f"{prefix}-{t}" for t in entity_types for prefix in ("B", "I")))
