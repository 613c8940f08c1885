"""Person names: a gazetteer of real given names and surnames, read with context and spaCy's entities.

spaCy's small English model alone misses about a quarter of the names in customers' sentences
('Can Amara Hoffmann see my medical records?' comes back as no entity or as an ORG). This module
looks at every run of capitalised words instead and scores it as a person name from evidence that
each mostly fails on its own:

- the gazetteer: given names and surnames of every locale in Faker's person providers (curated
  lists of common names, Latin script and romanised where the locale has them: some 20,000 given
  names and as many surnames across about 80 locales; pinned in requirements-data.txt and used
  as data only, never to generate anything);
- where the run stands: a capitalised pair inside a sentence is a proper noun, one that opens it
  says nothing; honorifics (Mr, Dr), introductions ("my name is", "this is"), relations ("my
  mother, ...", "my doctor ...") and possessives or person verbs after it ("'s", "who", "owes");
- spaCy's entities: PERSON adds evidence, ORG/GPE/LAW/DATE and friends take some away;
- a short lexicon of words that make a run a place, an organisation, a law or a date (months,
  weekdays, "Bank", "Court", "Street", "Act") — those runs need much more to count as a name.

A run becomes a PERSON finding when it has direct support (a given name first, a spaCy PERSON or
an introduction/honorific before it) and its score passes the bar; single words need more. Nothing
here logs text; the gazetteer loads once per process on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from apps.core.singleton import process_singleton


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A word: letters (any script), inner apostrophes and hyphens ("O'Sullivan", "Wreford-Baines").
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['\u2019]s$", re.I)

# Lower-case particles that belong inside a name ("Ludwig van Beethoven", "Ana de la Cruz").
_PARTICLES = _words("van von der den de del della di da das dos du la le bin ibn al el ben ter ten y zu ap")
_TITLES = _words("mr mrs ms miss mx dr prof professor sir dame lady lord madam madame mister rev fr")

# Words that make a capitalised run a date, a place, an organisation, a law or a product line.
_MONTHS_DAYS = _words(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday"
)
_NON_NAME = _MONTHS_DAYS | _words(
    "bank banks court courts street st road rd avenue ave boulevard blvd lane drive square park plaza "
    "hospital clinic center centre medical health pharmacy university college school academy institute "
    "inc ltd llc llp plc corp corporation company co group fund funds trust partners capital securities "
    "insurance financial bancorp holdings association foundation society agency department ministry "
    "service services office bureau act amendment code article section clause law rule rules regulation "
    "directive constitution treaty statute tribunal commission committee council board authority "
    "administration republic kingdom union states state county city town village river lake mount "
    "mountain island islands valley bay beach north south east west northern southern eastern western "
    "new san santa los las fort port syndrome disease index exchange reserve federal national "
    "international global american european british card visa account accounts plan plans tax "
    "medicare medicaid social security airport station church cathedral museum hotel airlines airways "
    "motors pharmaceuticals labs laboratories systems technologies software bros brothers"
)

# Well-known organisations named after people, which customers of a bank, clinic or law firm mention
# all the time ("move my 401k from Morgan Stanley to Edward Jones"): the run, lower-cased, its words
# (particles and initials dropped) joined by spaces. Such a run is an organisation unless an
# introduction, honorific or relation says a person ("my name is Raymond James", "my adviser ...").
FIRMS = frozenset(line.strip() for line in """
morgan stanley
goldman sachs
charles schwab
edward jones
raymond james
wells fargo
merrill lynch
jp morgan
morgan chase
jpmorgan chase
rowe price
dean witter
smith barney
cantor fitzgerald
john hancock
lincoln financial
charles stanley
hargreaves lansdown
brewin dolphin
alliance bernstein
dow jones
fannie mae
freddie mac
sallie mae
jackson hewitt
piper sandler
stifel nicolaus
janney montgomery scott
robert half
eli lilly
johns hopkins
kaiser permanente
sloan kettering
memorial sloan kettering
dana farber
cedars sinai
md anderson
bristol myers squibb
becton dickinson
walgreens
baker mckenzie
clifford chance
allen overy
kirkland ellis
latham watkins
sullivan cromwell
davis polk
jones day
white case
norton rose fulbright
hogan lovells
herbert smith freehills
slaughter and may
ernst young
price waterhouse
pricewaterhousecoopers
grant thornton
arthur andersen
morgan morgan
jacoby meyers
""".splitlines() if line.strip())

# Capitals or initials just before a run, which the run leaves out: "MD Anderson", "J.P. Morgan".
_INITIALS_BEFORE = re.compile(r"\b((?:[A-Z]\.){1,3}|[A-Z]{2,4})\s*$")


def _firm(key: str, before: str) -> bool:
    """Whether a run (its words, lower case) names a firm in FIRMS, with the initials before it or not."""
    initials = _INITIALS_BEFORE.search(before)
    return key in FIRMS or bool(initials and f"{initials.group(1).replace('.', '').lower()} {key}" in FIRMS)


# Context before the run: an introduction or a relation points at a person ("strong"); a verb or a
# preposition that often takes a person ("weak").
_RELATIONS = (
    r"mother|father|mom|mum|dad|son|daughter|wife|husband|partner|spouse|brother|sister|grandmother|"
    r"grandfather|grandson|granddaughter|aunt|uncle|cousin|niece|nephew|friend|neighbour|neighbor|"
    r"colleague|boss|manager|employer|employee|doctor|physician|gp|surgeon|nurse|dentist|therapist|"
    r"lawyer|attorney|solicitor|advisor|adviser|accountant|broker|agent|landlord|landlady|tenant|client|"
    r"patient|caregiver|carer|guardian|executor|beneficiary|trustee|fianc[eé]e?|ex|child|kid|baby"
)
_ROLES = (
    r"holder|owner|applicant|beneficiary|policyholder|signatory|patient|tenant|landlord|executor|guardian|"
    r"borrower|co-signer|cosigner|claimant|insured|deceased|employee|account name|full name"
)
_STRONG_BEFORE = re.compile(
    r"(?:\bmy name is|\bmy name's|\bname:|\bi am|\bi'm|\bthis is|\bit's|\bcall me|\bnamed|\bcalled|"
    r"\bsigned|\bregards,|\bsincerely,|\bthanks,|\bdear|\b(?:" + _ROLES + r")(?:\s+is|\s+was|:)|"
    r"\b(?:my|our|his|her|their|your)\s+(?:late\s+|elderly\s+|ex-)?(?:" + _RELATIONS + r")s?,?|"
    r"\b(?:" + "|".join(sorted(_TITLES)) + r")\.?)\s*$",
    re.I,
)
_WEAK_BEFORE = re.compile(
    r"\b(?:ask|asked|tell|told|call|called|email|e-mail|text|contact|see|saw|meet|met|visit|pay|paid|"
    r"sue|hire|hired|fire|fired|with|for|by|and|behalf of|name of|is|was|"
    r"can|could|will|would|should|did|does|do|has|have|had|may|might|must)\s*$",
    re.I,
)
# A place's prepositions: with the NER model's GPE/LOC/FAC label they settle it ("moved from Hong Kong").
_PLACE_BEFORE = re.compile(r"\b(?:in|at|near|from|to|into|across|around|outside|inside|via|of)\s*$", re.I)
_AFTER = re.compile(
    r"^(?:['\u2019]s\b|,?\s*(?:who|whose|whom)\b|\s+(?:and\s+i|said|says|told|asked|owes|owed|signed|"
    r"wants|needs|lives|lived|died|passed|works|worked|is\s+my|was\s+my|see|sees|has|had|will|would|"
    r"can|could|prescribed|paid|sued|left|stopped|agreed|refused|called|wrote|sent)\b)",
    re.I,
)
# Contractions read as capitalised words ("I'm", "It's", "Let's") are not names.
_CONTRACTION = re.compile(r"^[^\W\d_]+['\u2019](?:m|s|re|ve|d|ll|t)$", re.I)
_SENTENCE_END = tuple(".!?:;\n\"(")

SUPPORTING = frozenset({"PERSON"})
CONTRARY = frozenset({"ORG", "GPE", "LOC", "FAC", "PRODUCT", "LAW", "EVENT", "NORP", "WORK_OF_ART", "DATE",
                      "TIME", "LANGUAGE"})


@dataclass(frozen=True)
class Entity:
    """An NER entity to weigh with the gazetteer: a character span and its label."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class NameSpan:
    """A run of words judged to be a person's name, with the score that carried it."""

    start: int
    end: int
    score: float


class Gazetteer:
    """Case- and accent-insensitive sets of given names and surnames."""

    def __init__(self, given: Iterable[str], surnames: Iterable[str]) -> None:
        self.given = frozenset(k for name in given for k in _keys(name))
        self.surnames = frozenset(k for name in surnames for k in _keys(name))

    def is_given(self, word: str) -> bool:
        return any(k in self.given for k in _keys(word))

    def is_surname(self, word: str) -> bool:
        parts = [word, *word.split("-")] if "-" in word else [word]  # "Wreford-Baines": either half
        return any(k in self.surnames for part in parts for k in _keys(part))


def _keys(word: str) -> set[str]:
    """Lookup keys: case-folded, with and without accents and apostrophes ("José" ~ "Jose")."""
    folded = word.replace("\u2019", "'").casefold()
    plain = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    return {folded, plain, plain.replace("'", "")}


@process_singleton
def gazetteer() -> Gazetteer:
    """The process-wide gazetteer from Faker's person providers (every locale, cased scripts only)."""
    return Gazetteer(*_faker_names())


def _faker_names() -> tuple[set[str], set[str]]:
    import faker.providers.person as person

    given: set[str] = set()
    surnames: set[str] = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        for attr, value in vars(provider).items():
            if not isinstance(value, (tuple, list, dict, set, frozenset)) or not attr.startswith(("first_", "last_")):
                continue
            target = given if attr.startswith("first_") else surnames
            for entry in value:
                if isinstance(entry, str):
                    target.update(w for w in _WORD.findall(entry) if _name_shaped(w))
    return given, surnames


def _name_shaped(word: str) -> bool:
    """Capitalised with some lower case ("Amara", "McDonald", "O'Sullivan"), not an acronym ("IRA")."""
    return word[:1].isupper() and any(c.islower() for c in word)


def _opens_sentence(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before.endswith(_SENTENCE_END)


def _runs(text: str) -> list[list[tuple[int, int, str]]]:
    """Maximal runs of name-shaped words joined by single spaces (particles and initials inside)."""
    from spacy.lang.en.stop_words import STOP_WORDS

    runs: list[list[tuple[int, int, str]]] = []
    current: list[tuple[int, int, str]] = []
    previous_end = -2
    for match in _WORD.finditer(text):
        start, end, word = match.start(), match.end(), match.group()
        possessive = bool(_POSSESSIVE.search(word)) and len(word) > 3
        if possessive:
            end, word = end - 2, word[:-2]
        joined = current and text[previous_end:start] in (" ", ". ") and (
            text[previous_end:start] == " " or len(current[-1][2]) == 1)
        lowered = word.casefold()
        if _CONTRACTION.match(word):
            word = ""
        if word and _name_shaped(word) or (len(word) == 1 and word.isupper() and text[end:end + 1] == "."):
            if not joined and current:
                runs.append(current)
                current = []
            if lowered in STOP_WORDS and not current:  # a capitalised "Can", "The", "My": not a name
                previous_end = end
                continue
            current.append((start, end, word))
        elif lowered in _PARTICLES and joined:
            current.append((start, end, word))
        else:
            if current:
                runs.append(current)
            current = []
        previous_end = end
        if possessive and current:  # "Amara Hoffmann's claim": the name ends at the possessive
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    trimmed = []
    for run in runs:  # no particle or initial at either end
        while run and (run[-1][2].casefold() in _PARTICLES or len(run[-1][2]) == 1):
            run = run[:-1]
        while run and (run[0][2].casefold() in _PARTICLES or len(run[0][2]) == 1):
            run = run[1:]
        if run:
            trimmed.append(run)
    return trimmed


def _split_titles(run: list[tuple[int, int, str]]) -> tuple[bool, list[tuple[int, int, str]]]:
    titled = False
    while run and run[0][2].casefold() in _TITLES:
        titled, run = True, run[1:]
    return titled, run


def score_run(text: str, run: Sequence[tuple[int, int, str]], entities: Sequence[Entity],
              names: Gazetteer, *, titled: bool = False, tagged: bool = False) -> float | None:
    """The evidence that `run` (words with their spans) names a person; None when it cannot.

    Weights: the name's own words (a given name first, a surname last) and a capitalised phrase
    inside a sentence; an introduction, honorific or relation before it counts most; a verb or
    preposition that takes a person before, a possessive or person verb after, and spaCy's PERSON
    add some (`tagged`: the tagger has already dropped a function word opening the run). A month, a place or organisation word, or spaCy's other labels take some away (more
    when a place's preposition agrees with a place label). A run ending in an organisation or place
    word ("Supreme Court", "Deutsche Bank") is never a name."""
    start, end = run[0][0], run[-1][1]
    words = [w for _s, _e, w in run if w.casefold() not in _PARTICLES and len(w) > 1]
    if not words or words[-1].casefold() in _NON_NAME - _MONTHS_DAYS:
        return None
    before, after = text[max(0, start - 48): start], text[end: end + 32]
    single = len(words) == 1
    given = any(names.is_given(w) for w in (words if single else words[:-1]))
    surname = names.is_surname(words[-1])
    strong = titled or bool(_STRONG_BEFORE.search(before))
    if not strong and _firm(" ".join(words).casefold(), before):
        return None  # "Morgan Stanley", "Eli Lilly": a firm, unless the context says a person
    labels = {e.label for e in entities if e.start < end and start < e.end}
    person = "PERSON" in labels
    contrary = not person and bool(labels & CONTRARY)
    placed = contrary and bool(labels & {"GPE", "LOC", "FAC"}) and bool(_PLACE_BEFORE.search(before))
    if single and not (strong or (given and person)):
        return None
    score = 1.5 * given + 1.5 * surname + 3.0 * strong + 2.0 * person
    score -= 3.0 * sum(w.casefold() in _NON_NAME for w in words) + (3.0 if placed else 1.5 * contrary)
    if not single and (tagged or not _opens_sentence(text, start)):
        score += 1.0  # a proper-noun phrase; at a sentence's start only if the tagger vetted its first word
    score += 1.0 * bool(_WEAK_BEFORE.search(before)) + 1.0 * bool(_AFTER.search(after))
    return score


def find_names(text: str, entities: Sequence[Entity] = (), names: Gazetteer | None = None,
               not_names: Collection[int] = ()) -> list[NameSpan]:
    """Person names in `text`.

    `entities` are the NER model's spans; `not_names` the start offsets of words its tagger calls
    verbs, pronouns or other function words, which drops them when they open a run ("Ask Hannah")."""
    names = names or gazetteer()
    found: list[NameSpan] = []
    for raw in _runs(text):
        titled, run = _split_titles(raw)
        while len(run) > 1 and run[0][0] in not_names and not names.is_given(run[0][2]):
            run = run[1:]
        if not run or len(run) > 5:
            continue
        score = score_run(text, run, entities, names, titled=titled, tagged=bool(not_names))
        single = sum(1 for _s, _e, w in run if len(w) > 1) == 1
        if score is not None and score >= (4.5 if single else 2.0):
            found.append(NameSpan(run[0][0], run[-1][1], score))
    return found
