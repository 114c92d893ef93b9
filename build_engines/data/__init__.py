"""Reproducible, seeded assembly of the intent, jailbreak and PII data sets."""

from __future__ import annotations
