"""A seeded generator of labelled PII strings for issue 6, check 3 (recall >= 99%, precision >= 95%).

`labelled_set(n, seed)` returns `n` cases `(text, [(start, end, entity_type), ...])`. Positives are
generated valid: card numbers of four networks with a Luhn check digit, IBANs of ten countries with
ISO 13616 mod-97 check digits, US SSNs in the SSA's issued ranges, phone numbers in US, UK and German
formats (international and national), e-mail addresses, and person names from many cultures in
sentences. About a third of the cases are negatives that look like PII and are not: order numbers,
dates, amounts, invalid Luhn numbers, IBANs with a wrong check, SSNs outside the issued ranges, zip
codes, versions, and (half of them) capitalised non-names: places, organisations, drugs, laws, courts,
months and weekdays.
Independent of tests/apps/safety/pii_cases.py (another generator, another seed and other formats).
"""

from __future__ import annotations

import random
import re
import string
import unicodedata

import phonenumbers

# Given names and surnames from many cultures, written as their bearers write them (diacritics,
# apostrophes, hyphens, particles). Hand-picked for this test, not taken from any name list the
# recogniser uses: about a quarter of each are in no common-names list at all, so the recall on
# names depends on context and the NER model, not only on a lookup.
FIRST = ["Ingrid", "Tomasz", "Amara", "Lucas", "Yuki", "Beatriz", "Henrik", "Leila", "Mateo", "Siobhan",
         "Dmitri", "Camille", "Oluwaseun", "Greta", "Rafael", "Anneliese", "Kwame", "Marguerite", "Nikolai",
         "Helena", "Arjun", "Freya", "Santiago", "Ines", "Malcolm", "Jasmine", "Viktor", "Rosalind", "Emeka",
         "Chidinma", "Nnamdi", "Tendai", "Wanjiru", "Mekdes", "Thandiwe", "Adaeze", "Kofi", "Abena", "Folasade",
         "Aroha", "Tāne", "Keoni", "Kalani", "Eilidh", "Saoirse", "Siân", "Søren", "Łukasz", "Çağla", "Zoë",
         "José", "Bolat", "Altantsetseg", "Siddharth", "Venkatesh", "Lakshmi", "Priyanka", "Xiaoming", "Jiayi",
         "Hyun-woo", "Seo-yeon", "Haruto", "Sakura", "Farhad", "Shirin", "Yosef", "Noa", "Mustafa", "Aylin",
         "Ioana", "Radu", "Matteo", "Giulia", "Eamon", "Niamh", "Rhys", "Bronwen", "Ximena", "Itzel", "Joaquín",
         "Valentina", "Anahí", "Wiremu", "Mele", "Sefo", "Zainab", "Tariq", "Amira", "Omar"]
LAST = ["Lindqvist", "Wozniak", "Achebe", "Fontaine", "Tanaka", "Carvalho", "Johansson", "Haddad", "Ferreira",
        "O'Sullivan", "Volkov", "Laurent", "Adeyemi", "Hoffmann", "Delgado", "Brandt", "Mensah", "Dubois",
        "Petrov", "Bergstrom", "Krishnan", "Gallagher", "Moreno", "Vasquez", "Whitfield", "Rahman", "Novak",
        "Okonkwo", "Mwangi", "Nkosi", "Abebe", "Boateng", "Oyelaran", "Chukwuemeka", "Moyo", "Ngata",
        "Te Kanawa", "Kealoha", "Nakamura", "Takahashi", "Zhang", "Liu", "Nguyễn", "Tran", "Park", "Choi",
        "Bhattacharya", "Venkataraman", "Subramanian", "Chaudhry", "Farahani", "Tehrani", "Kaya", "Yılmaz",
        "Öztürk", "Popescu", "Ionescu", "Kowalczyk", "Brzęczyszczykiewicz", "Szabó", "Horváth", "Dvořák",
        "Jovanović", "Papadopoulos", "Georgiou", "Kristiansen", "Virtanen", "Halvorsen", "MacLeod", "Ó Briain",
        "ap Rhys", "Gutiérrez", "Quispe", "Mamani", "Huanca", "Tupou", "Fifita", "Al-Hashimi", "Benali",
        "Cohen", "Mizrahi", "Ben-David", "van der Meer", "de la Cruz", "dos Santos", "Okonkwo-Eze"]
# Capitalised words that are not names, in sentences like the customers': places, organisations
# (some named after people), drugs, laws, courts, months and weekdays.
PLACES = ["New York", "San Francisco", "Los Angeles", "New Jersey", "Hong Kong", "Buenos Aires", "Cape Town",
          "Kuala Lumpur", "Salt Lake City", "Frankfurt", "Manchester", "Lagos", "Nairobi", "Toronto", "Florida",
          "Bavaria", "Ontario", "Queensland", "Edinburgh", "Rio de Janeiro", "Mexico City", "Tel Aviv",
          "Abu Dhabi", "Santiago de Chile"]
ORGS = ["Wells Fargo", "Bank of America", "Goldman Sachs", "Deutsche Bank", "Mayo Clinic", "Kaiser Permanente",
        "Blue Cross Blue Shield", "Cleveland Clinic", "the Social Security Administration",
        "the Internal Revenue Service", "the Federal Reserve", "Vanguard", "Fidelity Investments", "Barclays",
        "HSBC", "Allianz", "Aetna", "UnitedHealthcare", "Citibank", "Santander", "Morgan Stanley",
        "Charles Schwab", "Lloyds Bank", "Credit Suisse"]
DRUGS = ["Lipitor", "Crestor", "Metformin", "Tylenol", "Advil", "Xanax", "Zoloft", "Ozempic", "Humira",
         "Eliquis", "Synthroid", "Lisinopril", "Prozac", "Wegovy", "Keytruda", "Warfarin"]
LAWS = ["Affordable Care Act", "Fair Credit Reporting Act", "Fifth Amendment", "Family and Medical Leave Act",
        "Truth in Lending Act", "Americans with Disabilities Act", "General Data Protection Regulation",
        "Dodd-Frank Act", "Consumer Rights Act", "Equality Act", "Fair Housing Act"]
COURTS = ["Supreme Court", "Court of Appeal", "High Court", "Ninth Circuit", "Tax Court", "Small Claims Court",
          "Family Court", "European Court of Justice"]
WHEN = ["January", "March", "April", "May", "June", "July", "August", "December", "Monday", "Friday"]
IBAN_BBAN = {  # country -> BBAN length; the BBAN's characters (digits; GB/NL/CH carry a bank code)
    "DE": 18, "FR": 23, "ES": 20, "IT": 23, "BE": 12, "AT": 16, "PL": 24, "NL": 14, "GB": 18, "CH": 17,
}
US_AREAS = ["212", "312", "415", "617", "206", "303", "713", "404", "305", "512", "602", "917", "248"]
UK_NUMBERS = [("20", 8), ("161", 7), ("131", 7), ("117", 7), ("7700", 6), ("7911", 6)]
DE_NUMBERS = [("30", 8), ("89", 8), ("40", 8), ("69", 8), ("221", 7), ("151", 8), ("176", 8)]
DOMAINS = ["example.com", "mail.example.org", "bank-customer.co.uk", "posteo.de", "clinic.example.net"]


def luhn_digit(body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
                                 ("37", 15), ("6011", 16), ("65", 16)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn_digit(body)


def group(number: str, rng: random.Random) -> str:
    sep = rng.choice(["", " ", "-"])
    if len(number) == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def iban(rng: random.Random, *, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_BBAN))
    alphabet = string.digits if country not in ("GB", "NL") else None
    if alphabet is None:  # 4-letter bank code, then digits
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(IBAN_BBAN[country] - 4))
    else:
        bban = "".join(rng.choice(alphabet) for _ in range(IBAN_BBAN[country]))
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + rng.randint(1, 96)) % 97 + 2 if check != 1 else 50
        check = check if check <= 98 else 3
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
    return compact


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def phone(rng: random.Random) -> str:
    """A number that libphonenumber's metadata calls valid, written the way people in that country do."""
    kind = rng.choice(["us", "us", "uk", "de"])
    while True:
        if kind == "us":
            area, exchange, line = rng.choice(US_AREAS), rng.randint(201, 989), rng.randint(1000, 9999)
            text = rng.choice([f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}",
                               f"+1 {area} {exchange} {line}", f"{area}.{exchange}.{line}"])
            region = "US"
        else:
            code, length = rng.choice(UK_NUMBERS if kind == "uk" else DE_NUMBERS)
            rest = str(rng.randint(2, 9)) + "".join(rng.choice(string.digits) for _ in range(length - 1))
            country, region = ("44", "GB") if kind == "uk" else ("49", "DE")
            text = rng.choice([f"+{country} {code} {rest}", f"0{code} {rest}"])
        if phonenumbers.is_valid_number(phonenumbers.parse(text, region)):
            return text


def _ascii_local(word: str) -> str:
    """A name as people put it in a mailbox name: ASCII letters and hyphens ("Ó Briain" -> "obriain")."""
    folded = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z-]", "", folded)


def email(rng: random.Random) -> str:
    first, last = _ascii_local(rng.choice(FIRST)), _ascii_local(rng.choice(LAST))
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}"])
    return f"{local}@{rng.choice(DOMAINS)}"


def name(rng: random.Random) -> str:
    """Given name and surname; one in six also has a second given name."""
    given = rng.choice(FIRST) + (f" {rng.choice(FIRST)}" if rng.random() < 1 / 6 else "")
    return f"{given} {rng.choice(LAST)}"


POSITIVE = {
    "CREDIT_CARD": (lambda r: group(card(r), r),
                    ["Please charge my card {}.", "The card number is {} and it expires next year.",
                     "Refund it to {}, thanks."]),
    "IBAN_CODE": (iban, ["Wire the money to {} please.", "My IBAN is {}.", "Beneficiary account: {}"]),
    "US_SSN": (ssn, ["My SSN is {}.", "Social security number {} for the tax form.",
                     "For the W-9, use {}."]),
    "PHONE_NUMBER": (phone, ["Call me on {} after five.", "You can reach the office at {}.",
                             "My mobile is {}."]),
    "EMAIL_ADDRESS": (email, ["Send the statement to {}.", "My e-mail is {} if that helps.",
                              "Contact: {}"]),
    "PERSON": (name, ["My name is {} and I have a question about my pension.",
                      "I am writing on behalf of my mother, {}.", "Dear advisor, this is {} again.",
                      "Can {} see my medical records?", "The account holder is {}.",
                      "{} owes me $1,200 from a loan we signed in 2021.", "Please ask {} to sign the lease.",
                      "My lawyer, {}, says the contract is void.", "Is {}'s will valid without a witness?",
                      "I share a joint account with {} at my bank.", "Hi, I'm {} from Leeds, about my ISA.",
                      "{} and I are buying a house in Portland."]),
}


def _negative(rng: random.Random) -> str:
    bad_card = card(rng)
    bad_card = bad_card[:-1] + str((int(bad_card[-1]) + rng.randint(1, 9)) % 10)
    options = [
        f"Order #{rng.randint(10000, 99999)}-{rng.randint(100, 999)} has not arrived yet.",
        f"The appointment is on {rng.randint(2020, 2029)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}.",
        f"It was signed on {rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2000, 2029)}.",
        f"I invested ${rng.randint(1, 999)},{rng.randint(100, 999)}.{rng.randint(10, 99)} last year.",
        f"The fee is EUR {rng.randint(1, 99)}.{rng.randint(100, 999)},{rng.randint(10, 99)} per quarter.",
        f"Is {group(bad_card, rng)} a valid number?",
        f"Transfer reference {iban(rng, valid=False)} was rejected.",
        f"Case file {rng.choice(['666', '900', '000'])}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)} is closed.",
        f"Our office zip code is {rng.randint(10000, 99999)}.",
        f"Tracking number {rng.randint(10**11, 10**12 - 1)}.",
        f"Take {rng.randint(1, 4)} tablets of {rng.choice([200, 400, 500])} mg every {rng.randint(4, 8)} hours.",
        f"Version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)} fixed the report.",
        f"The rate rose {rng.randint(1, 9)}.{rng.randint(0, 99):02d}% in Q{rng.randint(1, 4)}.",
        f"Policy number PN-{rng.randint(100000, 999999)} covers {rng.randint(2, 5)} people.",
    ]
    return rng.choice(options)


def _capitalised_negative(rng: random.Random) -> str:
    """A sentence whose capitalised words are places, organisations, drugs, laws, courts or dates."""
    place, org, drug, law, court, when = (rng.choice(PLACES), rng.choice(ORGS), rng.choice(DRUGS),
                                          rng.choice(LAWS), rng.choice(COURTS), rng.choice(WHEN))
    options = [
        f"I moved from {place} to {rng.choice(PLACES)} in {when}.",
        f"My account at {org} was frozen on {when}.",
        f"Does {org} charge a fee for wire transfers?",
        f"I have a mortgage with {org} and a pension in {place}.",
        f"Is {drug} safe to take with {rng.choice(DRUGS)}?",
        f"My doctor switched me from {drug} to {rng.choice(DRUGS)} in {when}.",
        f"Does the {law} apply to my landlord in {place}?",
        f"The {court} ruled on my appeal in {when}.",
        f"Can {org} see my medical records?",
        f"I am writing on behalf of {org}.",
        f"{org[0].upper() + org[1:]} denied my claim for {drug} in {when}.",
        f"Is the {court} in {place} bound by the {law}?",
    ]
    return rng.choice(options)


def labelled_set(n: int = 1200, seed: int = 6) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """`n` cases; about two thirds carry one or two entities, a third are negatives."""
    rng = random.Random(seed)
    kinds = sorted(POSITIVE)
    cases: list[tuple[str, list[tuple[int, int, str]]]] = []
    positives = 0
    for index in range(n):
        if index % 3 == 2:
            cases.append((_capitalised_negative(rng) if index % 6 == 5 else _negative(rng), []))
            continue
        picks = [kinds[positives % len(kinds)]] + ([rng.choice(kinds)] if rng.random() < 0.25 else [])
        positives += 1
        text, labels = "", []
        for kind in picks:
            make, templates = POSITIVE[kind]
            value, template = make(rng), rng.choice(templates)
            head, tail = template.split("{}")
            start = len(text) + len(head)
            labels.append((start, start + len(value), kind))
            text += head + value + tail + " "
        cases.append((text.strip(), labels))
    return cases
