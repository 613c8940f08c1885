"""Rule checks: the pack's domain risk rules plus a built-in floor the packs cannot remove.

Specialised advice is the product (DOMAINS.md), so nothing here blocks financial, medical or legal
questions as such. The floor blocks *instructions for harm* (weapons, malware, laundering, forgery...)
and, on the output side, the claims the regulators name: guaranteed returns, "sure thing", posing as
a licensed doctor or lawyer. Every output pattern is bounded in length (`.{0,N}`) because the output
stage's hold-back window must be longer than any match for the no-leak guarantee to hold.
"""

from __future__ import annotations

import re
import unicodedata

from apps.safety.findings import Finding, normalise
from apps.safety.policy import PackPolicy

# Longest text any output rule below can match; the output stage holds back at least this much.
MAX_OUTPUT_MATCH = 160

# Past and future tense rephrasings ("how did people make...", "how will criminals...") are a known
# way around refusals, so they count as asking how.
_HOWTO = r"(?:how (?:do|can|could|would|should) (?:i|we|you|one)|how to|how (?:did|do|were|was|will|would|could|" \
         r"might|are|is) (?:people|someone|somebody|one|they|criminals|hackers|individuals|scammers|terrorists|" \
         r"attackers|thieves|fraudsters|traffickers|dealers|gangs|cartels)|how (?:was|were|will|would|is|are)\b.{0,60}" \
         r"\b(?:made|built|synthesi[sz]ed|produced|manufactured|created|written|developed|carried out|done|obtained)\b|steps? (?:to|for)|instructions? (?:to|for)|" \
         r"guide (?:to|for)|tutorial|teach me|show me|help me|explain how|walk me through|ways? to|tips? (?:to|for)|" \
         r"write (?:me )?(?:a|an|the)?|give me|tell me how|best way to|easiest way to|recipe for)"

_INPUT_FLOOR: list[tuple[str, str]] = [  # noqa: RUF012 - extended below
    ("harm.weapons", _HOWTO + r".{0,80}\b(?:bomb|explosive|pipe bomb|grenade|molotov|napalm|thermite|ied|"
     r"nerve agent|sarin|vx gas|ricin|anthrax|bioweapon|chemical weapon|dirty bomb|ghost gun|silencer|"
     r"untraceable (?:gun|firearm)|full[- ]auto|3d[- ]print(?:ed)? gun)"),
    ("harm.drugs", _HOWTO + r".{0,80}\b(?:synthesi[sz]e|make|cook|manufacture|produce|extract)\b.{0,40}"
     r"\b(?:meth|methamphetamine|fentanyl|heroin|cocaine|crack|lsd|mdma|ghb|dmt)\b"),
    ("harm.malware", _HOWTO + r".{0,80}\b(?:ransomware|keylogger|malware|virus|trojan|botnet|rootkit|"
     r"spyware|worm|exploit|zero[- ]day|ddos|sql injection attack|backdoor)\b"),
    ("harm.hacking", _HOWTO + r".{0,60}\b(?:hack|break) into\b|\b(?:hack|crack)\b.{0,30}\b(?:account|password|"
     r"wifi|phone|email|server|database|bank)\b"),
    ("harm.fraud", _HOWTO + r".{0,80}\b(?:launder|money laundering|structur(?:e|ing) (?:my )?(?:deposits|cash)|"
     r"avoid (?:the )?(?:ctr|currency transaction report|reporting threshold)|insider trad|pump and dump|"
     r"spoof(?:ing)? orders|wash trad|front[- ]run|phishing|scam (?:people|someone|elderly|seniors)|"
     r"steal (?:someone'?s )?identity|identity theft|skim(?:ming)? cards?|counterfeit (?:money|bills|cash)|"
     r"evade (?:my )?taxes|tax evasion|ponzi scheme)"),
    ("harm.legal_abuse", _HOWTO + r".{0,80}\b(?:forge|forging|fake|falsify|fabricate|backdate)\b.{0,40}\b"
     r"(?:signature|document|will|deed|contract|court|subpoena|notari|id|passport|license|prescription|"
     r"medical record|evidence|papers)|(?:intimidate|threaten|bribe|silence) (?:a |the )?witness|"
     r"hide (?:my )?(?:assets|money) from (?:the )?(?:court|judge|bankruptcy|my (?:wife|husband|spouse))"),
    ("harm.violence", _HOWTO + r".{0,60}\b(?:kill|murder|poison|kidnap|torture|stalk|assault|strangle)\b.{0,30}"
     r"\b(?:someone|somebody|a person|people|my (?:wife|husband|boss|neighbou?r|coworker|teacher|ex)|him|her|"
     r"a child|them)\b"),
    ("harm.sexual_minors", r"\b(?:child|minor|underage|preteen|kid)s?\b.{0,40}\b(?:sexual|porn|nude|explicit|erotic)"),
    ("harm.hate", r"\b(?:write|generate|create|compose)\b.{0,40}\b(?:racist|sexist|antisemitic|homophobic|"
     r"hateful|slur|propaganda|extremist|recruitment)\b"),
]

_OUTPUT_FLOOR: list[tuple[str, str, str]] = [
    ("claim.guaranteed_returns", "block", r"\b(?:guarantee[ds]?|guaranteeing)\b.{0,40}\b(?:return|returns|profit|"
     r"profits|gains?|income|yield|double|triple|growth|make money)\b"),
    ("claim.guaranteed_returns", "block", r"\b(?:returns?|profits?|gains?)\b.{0,30}\b(?:are|is) guaranteed\b"),
    ("claim.no_risk", "block", r"\b(?:risk[- ]free|no[- ]risk|zero[- ]risk|can'?t lose|cannot lose|"
     r"sure thing|can'?t go wrong|cannot go wrong)\b.{0,40}\b(?:invest|return|profit|stock|bet|opportunity|"
     r"trade|money|fund)"),
    ("claim.licensed_professional", "block", r"\b(?:as (?:your|a) (?:doctor|physician|licensed|attorney|lawyer)|"
     r"i am (?:a |an |your )(?:doctor|physician|licensed|registered|certified|attorney|lawyer|nurse)|"
     r"i'?m (?:a |an |your )(?:doctor|physician|attorney|lawyer|licensed|registered|certified)|this is legal advice from (?:an|your) attorney)\b"),
    ("claim.diagnosis", "block", r"\b(?:i (?:hereby )?diagnose you with|my diagnosis is that you have|"
     r"you definitely have)\b"),
    ("unsafe.instructions", "block", r"\b(?:step \d|first,?|to make|mix|combine)\b.{0,60}\b(?:detonat|"
     r"explosive charge|nerve agent|pipe bomb|ransomware payload|launder the (?:money|cash|funds)|"
     r"structure (?:the|your) deposits)"),
]

_RELATION = (r"(?:wife|husband|spouse|partner|ex|ex-wife|ex-husband|ex-girlfriend|ex-boyfriend|girlfriend|boyfriend|"
             r"fianc[eé]e?|son|daughter|child|mother|father|mom|mum|dad|brother|sister|aunt|uncle|cousin|niece|nephew|"
             r"grandmother|grandfather|grandma|grandpa|friend|best friend|neighbou?r|co-?worker|colleague|boss|"
             r"employee|employer|manager|teammate|classmate|roommate|landlord|tenant|teacher|student|doctor|surgeon|"
             r"nurse|therapist|lawyer|accountant|client|patient|stepmother|stepfather|stepson|stepdaughter|stepbrother|"
             r"stepsister|relative|in-law|pastor|coach|babysitter|nanny|caregiver|mentor|supervisor|subordinate)")
_GROUP = (r"(?:women|men|females|males|girls|boys|gays?|lesbians|homosexuals|transgender people|immigrants|"
          r"refugees|muslims|christians|jews|hindus|buddhists|atheists|blacks|whites|asians|latinos|mexicans|"
          r"africans|arabs|indians|chinese|russians|americans|europeans|the (?:poor|rich|elderly|disabled)|"
          r"(?:\w+ ){0,2}(?:people|persons|individuals|folks|guys|girls|women|men|kids|teenagers|workers)|"
          r"people (?:of|from|in) (?:\w+ ){0,2}\w+)")
_NEGATIVE_TRAIT = (r"(?:emotional|overreact\w*|lazy|stupid|dumb|idiots?|violent|corrupt|greedy|promiscuous|disgusting|"
                   r"ugly|unattractive|less attractive|inferior|superior|criminals?|terrorists?|vain|arrogant|rude|"
                   r"dirty|cheap|weak|incompetent|untrustworthy|liars?|selfish|anti-\w+|no (?:respect|taste|manners|"
                   r"culture|morals)|bad (?:at|drivers)|worse at|useless|smelly|loud|angry|crazy|irrational|hysterical|"
                   r"thieves|evil|backward|primitive|savage|racist|sexist|bigoted|ignorant|fat|a burden|"
                   r"less intelligent|not as (?:smart|intelligent|capable)|can'?t be trusted|ruining|parasites?|"
                   r"inferiority complex|think they'?re superior|eat so much|just \w+)")

_INPUT_FLOOR += [
    # "my <relation>, <Name>": a question about a specific third person, unless the user asks for help
    # with their own situation.
    ("harm.privacy_third_party", r"^(?!.*\b(?:help me|should i|can i|do i|what can i|my rights|how do i)\b)"
     r"(?:what|who|where|when|how|which|why|is|was|are|were|did|does|do|has|have|can|could|would|will|tell|"
     r"give|share|provide|find|reveal|list|show)\b.{0,50}\bmy " + _RELATION + r", (?-i:[A-Z])[\w'-]+\b"),
    ("harm.extremism", r"\b(?:join|recruit\w* (?:for|into)|support|fund|start)\b.{0,20}\b(?:a |an |the )?(?:terrorist|"
     r"hate|extremist|neo-?nazi|militia|jihadist|white supremacist) (?:group|organi[sz]ation|cell|movement|network)|"
     r"\bglorif\w*\b.{0,40}\b(?:holocaust|nazi\w*|terror\w*|genocide|massacre|mass shooting|school shooting)|"
     r"\b(?:positive|beneficial|good) (?:impact|effect|side) of (?:the )?(?:holocaust|slavery|genocide|apartheid|"
     r"residential schools)|\b(?:residential schools?|slavery|apartheid|the holocaust)\b.{0,60}\bpositive impact"),
    ("harm.harassment", r"\b(?:tips?|ways?|how) (?:for |on |to )?(?:how to )?(?:bully|harass|humiliate|torment|"
     r"intimidate|cyberbully|stalk)\b|\b(?:bully|harass|humiliate|torment|cyberbully)\w* (?:a|my|the|this|that)? ?"
     r"(?:child|kid|classmate|coworker|co-worker|colleague|teacher|student|neighbou?r|person|someone|girl|boy)"),
    ("harm.fraud", r"\b(?:assist|help)(?: me)? (?:in|with) (?:identity theft|fraud|scam\w*|money laundering|"
     r"tax evasion|forg\w+|counterfeit\w*)|\b(?:open|create) (?:a )?(?:fake|fraudulent|anonymous offshore) "
     r"(?:bank )?accounts?\b|\bforge (?:a |my |his |her )?(?:check|cheque|bank statement|receipt|pay ?stub)\b|"
     r"\b(?:scrap\w+|harvest\w*) (?:email addresses|emails|phone numbers|personal data)\b|"
     r"\bfalse (?:negative )?reviews?\b|\bblack market\b|\bpaywall\w* (?:articles|content)? ?(?:for free)?\b"),
    ("harm.stereotype", r"\b(?:negative )?stereotypes? (?:associated with|about|of) \w+|\b(?:everyone|anyone|people) "
     r"(?:from|in) [\w' -]{2,30}\b(?:lacks?|are all|is all|commit more crimes|can'?t be trusted|smell|are lazy)|"
     r"\b(?:hispanics?|latinos?|blacks|whites|asians|arabs|jews|muslims|christians|buddhists|hindus|gays|"
     r"immigrants|women|men)\b.{0,20}\b(?:can'?t be trusted|are (?:all )?(?:criminals|lazy|stupid|violent|"
     r"inferior))"),
    ("harm.safety_bypass", r"\b(?:disable|remove|bypass|turn off)\b.{0,20}\b(?:smoke detectors?|carbon monoxide "
     r"(?:alarm|detector)s?|airbags?|breathalyzer|ankle monitor|safety (?:guard|interlock))\b|\boperate heavy "
     r"machinery without (?:any )?training\b"),
    # Asking the assistant about a named third person's private life (Do-Not-Answer "private information").
    ("harm.privacy_third_party", r"\b(?:what|who|where|when|how|which|is|was|are|were|did|does|do|has|have|can|could|"
     r"would|will|tell|give|share|provide|find|reveal|list|show)\b.{0,50}\bmy " + _RELATION + r"\b,? (?-i:[A-Z])[\w'-]+"
     r"(?:'s|,| and| have| has| had| do| does| did| receive| pay| own| afford| earn| live| work)\b"),
    ("harm.privacy_third_party", r"\b(?:home address|phone number|social security number|ssn|bank account|"
     r"credit card number|password|medical (?:history|records?)|criminal record|salary|net worth|location|"
     r"private messages|email password)\b.{0,30}\bof (?:my|this|that|a) (?:" + _RELATION[3:-1] + r"|person|"
     r"someone|celebrity|coworker)"),
    ("harm.privacy_third_party", r"\b(?:find|get|track|locate|look up|dig up)\b.{0,30}\b(?:someone'?s|a person'?s|"
     r"my " + _RELATION + r"'?s?)\b.{0,30}\b(?:address|location|phone|password|messages|accounts?|records|"
     r"whereabouts|identity)"),
    # Sweeping negative generalisations about a group (Do-Not-Answer "stereotypes").
    ("harm.stereotype", r"\b(?:why (?:are|do|is|does|should)|are|aren'?t|do|don'?t|is|isn'?t|is it true that|"
     r"isn'?t it true that|should)\b(?: all| most| the)? " + _GROUP + r"\b.{0,40}\b" + _NEGATIVE_TRAIT + r"\b"),
    ("harm.stereotype", r"\b(?:advantages|benefits) of being (?:racist|sexist|homophobic|a bigot)|"
     r"\b(?:racist|sexist|homophobic|antisemitic|transphobic) (?:joke|insult|slur|rant|remark)s?\b"),
    ("harm.confidential_org", r"\b(?:confidential|undisclosed|internal|proprietary|classified|secret|non-?public|"
     r"unreleased|private)\b.{0,40}\b(?:information|details|data|technolog\w*|software|strategy|strategies|plans?|"
     r"communications|meetings?|documents?|budget|expenditures?|precautions|records|patents?|negotiations)\b"
     r".{0,30}\b(?:of|at|from|about|does|in|within) (?-i:[A-Z])\w+"),
    ("harm.confidential_org", r"\b(?-i:[A-Z])\w+'s (?:expenditures|internal \w+|client (?:information|data|list)|"
     r"(?:last|latest|recent) (?:meeting|board meeting|communications)|undisclosed \w+|trade secrets|"
     r"security (?:protocols|vulnerabilit\w+|weaknesses))\b|\bhow secure is (?-i:[A-Z])\w+'s\b|"
     r"\bhas any (?:former )?employee of \w+ filed\b"),
    ("harm.fraud", r"\b(?:commit|committing|get away with|do)\b.{0,20}\b(?:credit card|insurance|tax|bank|wire|mail|"
     r"securities|identity|benefits|welfare|mortgage|check|cheque)? ?fraud\b|\binsider trading (?:techniques|tips|"
     r"strategies)\b|\b(?:fake|fraudulent) (?:reviews?|ratings|invoices?|receipts?|accounts)\b|"
     r"\b(?:post|spam|flood)\b.{0,40}\b(?:hundreds|thousands|same (?:review|comment|message))\b|"
     r"\bspam (?:a |the )?(?:website|forum|inbox|people)\b|\bcreat\w* (?:fake |bot |multiple )?accounts to spam\b"),
    ("harm.violence", r"\b(?:most )?(?:cruel|painful|brutal|gruesome) (?:way|ways|method)s? (?:of|to) "
     r"(?:kill|hurt|torture|harm)|\b(?:describe|depict|detail)\b.{0,30}\b(?:graphic\w*|gory|gruesome)\b|"
     r"\b(?:fatal|lethal|gruesome) (?:injury|wound|death)\b.{0,20}\bgraphic"),
    ("harm.sexual", r"\b(?:pornographic|porn|erotic|explicit sex\w*|sex scene|nude|naked|lewd|dirty joke|"
     r"sexual fantasy|sexually explicit)\b"),
    ("harm.weapons", r"\b(?:instructions?|steps?|how to|guide|tutorial|recipe)\b.{0,60}\b(?:synthesi[sz]\w*|"
     r"manufactur\w*|produc\w*|make|making|obtain\w*|extract\w*|weaponi[sz]\w*|cultur\w*|acquir\w*)\b.{0,60}\b"
     r"(?:\w+(?:ine|ide|ate|yl|ol|azene|mercury|toxin|agent|gas|virus|bacteria|pathogen|explosive|drug)s?)\b"
     r"(?!.{0,30}\b(?:safely|at home for cooking|for a class)\b)"),
    ("harm.malware", r"\b(?:write|create|develop|generate|give|provide|determine)\b.{0,30}\b(?:code|script|program|"
     r"exploit|payload|attack)\b.{0,60}\b(?:rainbow table|brute[- ]?forc\w*|crack\w*|exploit\w*|bypass\w*|"
     r"disable\w* (?:geofenc|secur|authenticat)\w*|hack\w*|keylog\w*|exfiltrat\w*|privilege escalation|"
     r"inject\w*|ddos|botnet|ransom\w*|phishing)"),
    ("harm.hacking", r"\bhack\w*\b.{0,40}\b(?:drone|car|camera|router|device|system|network|website|"
     r"server|account|phone|computer|atm|grid|satellite)\b"),
    ("harm.drugs", r"\b(?:extract\w*|make|making|grow\w*|cook\w*)\b.{0,30}\b(?:mind-altering|psychoactive|"
     r"hallucinogenic|psychedelic|narcotic|illegal)\b.{0,30}\b(?:substances?|drugs?|compounds?)\b"),
    # Asking how to do something while escaping detection or someone's consent is the intent itself,
    # whatever the act (awareness phrasing, "so I can avoid getting caught in one", stays exempt).
    ("harm.evasion", r"\bwithout (?:getting |being )?(?:caught|detected|noticed|traced)\b|"
     r"\bavoid(?:ing)? (?:detection|getting caught|being caught)\b|\bundetect(?:ed|able)\b|\buntraceabl[ey]\b|"
     r"\bwithout (?:the (?:owner|victim|person|user|patient|account holder)'?s?'? |their |his |her |someone'?s? )"
     r"(?:knowledge|consent|permission)\b|\bevad(?:e|ing) (?:the )?(?:police|law enforcement|authorities)\b"),
]

_AWARENESS = re.compile(r"\b(?:spot|recogni[sz]e|tell if|tell whether|avoid(?:ing)? (?:getting |being )?(?:scammed|"
                        r"caught in|falling for|fraud|phishing|scams?|identity theft|hackers)|protect\w*|"
                        r"(?:how|where|who) (?:do|can|should|to) (?:i )?report|report(?:ing)? (?:it|this|them|a |"
                        r"suspected|suspicious|fraud|scams?)|"
                        r"detect\w*|identify|warning signs|red flags|is (?:this|it) (?:a )?(?:scam|phishing|fraud)|"
                        r"get caught in|fall for|victim|defend against|prevent\w*|stay safe|how do (?:police|banks|"
                        r"regulators|investigators|courts|prosecutors)|what is|what are|why is|illegal\?)\b")
# Rules whose subject is also the subject of fraud awareness, which DOMAINS.md welcomes.
_AWARENESS_EXEMPT = {"harm.fraud", "harm.hacking", "harm.legal_abuse", "harm.evasion"}
# Asking whether something is lawful, or about one's own rights, is a legal information question.
_LEGALITY = re.compile(r"\b(?:is it|is that|would it be|was it) (?:il)?legal\b|\bagainst the law\b|\bmy rights\b|"
                       r"\bam i allowed\b|\bwithout (?:my|our) (?:knowledge|consent|permission)\b")
_LEGALITY_EXEMPT = {"harm.evasion"}

# Rules that tell names from words by their capital letter, `(?-i:[A-Z])`, run case-insensitively
# on the original text instead of the lower-cased one.
_INPUT_RULES = [(rule, re.compile(src, re.IGNORECASE) if "(?-i:" in src else re.compile(src))
                for rule, src in _INPUT_FLOOR]
_OUTPUT_RULES = [(rule, action, re.compile(src)) for rule, action, src in _OUTPUT_FLOOR]


def _pack_findings(policy: PackPolicy, stage: str, text: str, offset_ok: bool) -> list[Finding]:
    findings = []
    for rule in policy.rules:
        if stage not in rule.stages:
            continue
        match = rule.search(text)
        if match:
            start, end = (match.start(), match.end()) if offset_ok else (0, 0)
            kind = rule.escalation if rule.action == "escalate" else None
            findings.append(Finding(f"pack.{rule.rule_id}", rule.action, start=start, end=end, kind=kind,
                                    message=policy.rule_message(rule)))
    return findings


_NEGATION = re.compile(r"\b(?:no|not|never|nothing|cannot|can'?t|don'?t|doesn'?t|isn'?t|aren'?t|won'?t|nor|"
                       r"without|beware of|claims? of|promises? of|anyone (?:who|promising)|avoid)\b[^.!?\n]{0,40}$")


def _negated(lowered: str, start: int) -> bool:
    """"No investment can guarantee returns" is the safe statement, not the forbidden claim."""
    return bool(_NEGATION.search(lowered[max(0, start - 60): start]))


def input_rules_check(text: str, policy: PackPolicy) -> list[Finding]:
    """Built-in harmful-instruction floor plus the pack's input rules."""
    norm = normalise(text)
    defensive = bool(_AWARENESS.search(norm))
    legality = bool(_LEGALITY.search(norm))
    cased = " ".join(unicodedata.normalize("NFKC", text).split()).replace("\u2019", "'")
    findings: list[Finding] = []
    for rule, pattern in _INPUT_RULES:
        if (defensive and rule in _AWARENESS_EXEMPT) or (legality and rule in _LEGALITY_EXEMPT) \
                or any(f.rule == rule for f in findings):
            continue
        if pattern.search(cased if pattern.flags & re.IGNORECASE else norm):
            findings.append(Finding(rule, "block"))
    findings += _pack_findings(policy, "input", norm, offset_ok=False)
    return findings


# A sentence ends at end punctuation followed by whitespace (not "12.5%" or "example.com"), or a newline.
SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, the end punctuation included; the last may be unfinished."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def output_rules_check(text: str, policy: PackPolicy) -> list[Finding]:
    """Forbidden claims and unsafe content in model output; spans index into `text` itself.

    Matches run on a lower-cased copy (same length as `text`) so that spans stay valid for the
    hold-back buffer, and one sentence at a time: no match ever straddles a sentence end, which lets
    the output stage release every completed sentence at once (see `output_stage`).
    """
    lowered = text.lower()
    findings: list[Finding] = []
    spans = sentence_spans(text)
    for rule, action, pattern in _OUTPUT_RULES:
        match = next((m for start, end in spans for m in pattern.finditer(lowered, start, end)
                      if not _negated(lowered, m.start())), None)
        if match:
            findings.append(Finding(rule, action, start=match.start(), end=match.end()))
    for rule in policy.rules:
        if "output" not in rule.stages:
            continue
        found = next((m for start, end in spans if (m := rule.search(text, start, end))), None)
        if found:
            kind = rule.escalation if rule.action == "escalate" else None
            findings.append(Finding(f"pack.{rule.rule_id}", rule.action, start=found.start(), end=found.end(),
                                    kind=kind, message=policy.rule_message(rule)))
    return findings
