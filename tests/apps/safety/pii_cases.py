"""A generator of labelled PII test strings: valid cards, IBANs, SSNs, phones, emails, names.

Each case is `(text, [(start, end, entity_type), ...])`. Numbers are generated valid (Luhn, mod-97,
SSA rules); sentences also carry look-alike non-PII numbers (amounts, dates, order numbers, zip
codes) so that precision is measured, not just recall. Seeded, so the set is the same every run.
"""

from __future__ import annotations

import random

FIRST = ["James", "Maria", "Robert", "Aisha", "Michael", "Elena", "David", "Priya", "William", "Sofia",
         "Thomas", "Fatima", "Daniel", "Chloe", "Kevin", "Hannah", "Jonathan", "Olivia", "Carlos", "Emily",
         "Andrew", "Grace", "Samuel", "Laura", "Mohammed", "Rachel", "Patrick", "Julia", "George", "Natalie"]
LAST = ["Smith", "Garcia", "Johnson", "Okafor", "Williams", "Rossi", "Brown", "Patel", "Miller", "Novak",
        "Anderson", "Hughes", "Martinez", "Schneider", "Thompson", "Kowalski", "Robinson", "Nguyen", "Clarke",
        "Fischer", "Walker", "Murphy", "Bennett", "Hernandez", "Sullivan", "Moreau", "Jensen", "Lopez"]
IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "BE": 16, "CH": 21, "IE": 22}
AREA_CODES = ["212", "415", "312", "617", "206", "303", "713", "404", "305", "202", "646", "213", "512"]


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        candidate = body + check
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("34", 15), ("6011", 16)])
    digits = _luhn_complete(prefix, length, rng)
    sep = rng.choice([" ", "-", ""])
    groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else [digits[i:i + 4] for i in range(0, 16, 4)]
    return sep.join(groups)


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_LENGTHS))
    bban = "".join(rng.choice("0123456789") for _ in range(IBAN_LENGTHS[country] - 4))
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = f"{98 - int(numeric) % 97:02d}"
    compact = country + check + bban
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def phone(rng: random.Random) -> str:
    area, exchange, line = rng.choice(AREA_CODES), rng.randint(201, 989), rng.randint(1000, 9999)
    style = rng.randrange(5)
    if style == 0:
        return f"({area}) {exchange}-{line}"
    if style == 1:
        return f"{area}-{exchange}-{line}"
    if style == 2:
        return f"+1 {area} {exchange} {line}"
    if style == 3:
        return f"{area}.{exchange}.{line}"
    return rng.choice(["+44 20 7946 0958", "+49 30 90182000", "+33 1 42 68 53 00", "+353 1 234 5678"])


def email(rng: random.Random) -> str:
    user = rng.choice(FIRST).lower() + rng.choice([".", "_", ""]) + rng.choice(LAST).lower()
    if rng.random() < 0.3:
        user += str(rng.randint(1, 99))
    return f"{user}@{rng.choice(['example.com', 'mail.co.uk', 'bank-corp.org', 'clinic.health', 'law.firm'])}"


def name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


MAKERS = {"CREDIT_CARD": card, "IBAN_CODE": iban, "US_SSN": ssn, "PHONE_NUMBER": phone,
          "EMAIL_ADDRESS": email, "PERSON": name}

TEMPLATES = {
    "CREDIT_CARD": ["My card number is {} and it was charged twice.", "Charge {} for the $49.99 invoice.",
                    "Why was my card {} declined on 2024-03-15?", "Please cancel card {} please."],
    "IBAN_CODE": ["Send the refund to {} by Friday.", "My IBAN is {} for the 2,500 EUR transfer.",
                  "Is {} a valid account for wire transfers?"],
    "US_SSN": ["My SSN is {} and I need my tax transcript.", "The form asks for {} in box 3.",
               "Social security number {} was on the letter."],
    "PHONE_NUMBER": ["Call me back at {} after 5pm.", "My phone is {} if the clinic needs it.",
                     "You can reach the office on {} about order #48213."],
    "EMAIL_ADDRESS": ["Email the statement to {} please.", "My address is {} for the lawyer's reply.",
                      "Send results to {} before 10 March."],
    "PERSON": ["My name is {} and I need help with my mortgage.", "I am writing for my neighbour {} who fell.",
               "Please ask {} to sign the lease.", "{} owes me $1,200 from a loan.",
               "My doctor, {}, prescribed 20 mg of lisinopril.", "The tenant {} stopped paying rent in May."],
}

NEGATIVES = [
    "My balance went from $12,450.77 to $9,870.10 on 2024-02-29.",
    "Order #4821937 shipped to zip 94105 on 03/15/2024.",
    "Is a 4.5% APR on a 30-year loan of 350000 reasonable?",
    "Take 500 mg every 8 hours, no more than 3000 mg in 24 hours.",
    "Case number 2023-CV-004512 was filed in district court.",
    "The reference is 1234 5678 9012 3456 on the invoice.",
    "Policy 7789-001 renews in 2025 for 1,250 dollars.",
    "How do index funds work and what fees should I expect?",
    "What is the statute of limitations for breach of contract?",
    "My blood pressure is 140/90 and my pulse is 88.",
]


def generate(count: int = 1200, seed: int = 7) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """`count` labelled strings: most with one or two entities, one in ten with none."""
    rng = random.Random(seed)
    cases: list[tuple[str, list[tuple[int, int, str]]]] = []
    kinds = sorted(MAKERS)
    for index in range(count):
        if index % 10 == 9:
            cases.append((rng.choice(NEGATIVES), []))
            continue
        parts: list[str] = []
        labels: list[tuple[int, int, str]] = []
        for _ in range(1 + (rng.random() < 0.3)):
            kind = rng.choice(kinds)
            template = rng.choice(TEMPLATES[kind])
            value = MAKERS[kind](rng)
            prefix = " ".join(parts) + (" " if parts else "")
            start = len(prefix) + template.index("{}")
            labels.append((start, start + len(value), kind))
            parts.append(template.format(value))
        cases.append((" ".join(parts), labels))
    return cases
