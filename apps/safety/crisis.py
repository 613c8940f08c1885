"""Crisis and emergency detection: deterministic, before the model, never left to it.

Two kinds, each escalated with the pack's text:
- `crisis`: suicidal ideation or self-harm (California SB 243 / New York: refer to crisis services);
- `emergency`: a medical emergency happening now (chest pain with arm numbness, not breathing,
  poisoning, overdose taken, stroke signs, anaphylaxis) -> "call your local emergency number now".

The patterns look for the person's own situation (first person, or someone with them right now), so
that informational questions ("how is an overdose treated in hospital", "kill a process") pass.
"""

from __future__ import annotations

import re

from apps.safety.findings import Finding, normalise
from apps.safety.policy import PackPolicy

_ME = r"(?:i|i'm|im|i've|ive|i'd|id|me|my|myself)"
_SOMEONE = r"(?:my (?:son|daughter|child|kid|baby|wife|husband|partner|mom|mum|mother|dad|father|friend|"
_SOMEONE += r"brother|sister|grandma|grandpa|grandmother|grandfather|roommate|boyfriend|girlfriend)|he|she|they)"
_WHO = rf"(?:{_ME}|{_SOMEONE})"

_CRISIS_PATTERNS = [
    # Direct statements of suicidal intent or ideation.
    r"\b(?:kill|killing|hang|hanging|shoot|shooting|drown|drowning|poison|poisoning) (?:my ?self)\b",
    r"\b(?:hurt|hurting|harm|harming|cut|cutting|burn|burning|starve|starving|punish|punishing) my ?self\b",
    r"\bself[- ]?harm(?:ing)?\b.{0,40}\b(?:i|me|my|again|started|urge)\b",
    r"\b(?:i|i'm|im|i've|ive|me|my)\b.{0,60}\bself[- ]?harm",
    r"\b(?:end|ending|take|taking|took) my (?:own )?life\b",
    r"\b(?:end|ending) it all\b",
    r"\bunalive (?:my ?self|me)\b",
    r"\bkms\b",
    r"\bsuicid(?:e|al)\b.{0,80}\b(?:i|i'm|im|me|my|myself)\b",
    r"\b(?:i|i'm|im|i've|ive|me|my|myself)\b.{0,80}\bsuicid(?:e|al)",
    r"\b(?:commit|committing) suicide\b",
    r"\b(?:want|wanna|wanted|going|plan|planning|ready|trying) to die\b",
    r"\b(?:wish|wished) (?:i|i'd|id) (?:was|were|had) (?:dead|never been born)\b",
    r"\b(?:wish|wished) i (?:could )?(?:die|disappear forever|not wake up)\b",
    r"\bbetter off (?:dead|without me)\b",
    r"\b(?:no|nothing|no reason) (?:left )?to live for\b",
    r"\bno (?:point|reason) (?:in )?(?:living|being alive|going on)\b",
    r"\bno (?:point|reason|will) (?:left )?to (?:live|go on|keep living|stay alive)\b",
    r"\b(?:don't|dont|do not|didn't|no longer) (?:want|wanna) to (?:live|be alive|exist|be here anymore|wake up)\b",
    r"\b(?:can't|cant|cannot) (?:go on|keep going|do this) any ?more\b",
    r"\b(?:how|best way|easiest way|painless way|quickest way|ways?) (?:to|can i|do i|could i|should i) "
    r"(?:kill my ?self|die|end my life|commit suicide|overdose)\b",
    r"\bpainless (?:way|method|death)\b",
    # Eating disorders and self-injury methods are self-harm too.
    r"\b(?:make|making) my ?self (?:throw up|vomit|purge|puke)\b",
    r"\b(?:develop|get|become) (?:anorexi[ac]|bulimi[ac])\b",
    r"\b(?:less|fewer) than [1-7]\d\d (?:calories|kcal)\b",
    r"\b(?:dangerously|extremely|very) low[- ]calorie\b",
    r"\b(?:stop|quit) (?:eating|eating and drinking|drinking water)\b.{0,30}\b(?:until|till) i (?:die|disappear)\b",
    r"\b(?:starv\w+|laxatives?|purg\w+|vomit\w*|diet pills)\b.{0,40}\b(?:lose weight|weight loss|be thin|thinner)\b",
    r"\b(?:lose weight|weight loss)\b.{0,40}\b(?:starv\w+|laxatives?|purg\w+|by vomiting|not eating)\b",
    r"\b(?:object|tool|thing|way|method)s? (?:to use )?(?:for|to) (?:self[- ]harm|cut(?:ting)? my ?self)\b",
    r"\b(?:hide|hiding) (?:my )?(?:self[- ]harm|cuts|scars) from\b",
    r"\b(?:how many|what number of) (?:pills|tablets|capsules)\b.{0,60}\b(?:to die|to kill|lethal|to overdose|fatal)\b",
    r"\blethal (?:dose|amount)\b.{0,60}\b(?:for me|to die|to kill my ?self|end (?:it|my life))\b",
    r"\b(?:writing|wrote|written) (?:a |my )?(?:suicide|goodbye) (?:note|letter)\b",
    r"\b(?:giving|gave) away my (?:things|stuff|belongings)\b.{0,60}\b(?:won't need|gone|goodbye)\b",
    r"\b(?:i|i'm|im) (?:feel|feeling)? ?(?:like )?(?:a burden|hopeless|worthless)\b.{0,80}\b(?:die|dead|end|gone)\b",
]

_EMERGENCY_PATTERNS = [
    # Heart attack signs.
    r"\bchest (?:pain|pains|tightness|pressure|hurts|is hurting|feels tight)\b.{0,80}"
    r"\b(?:arm|jaw|numb|numbness|sweat|sweating|breath|breathe|faint|dizzy|nause)",
    r"\b(?:arm|jaw) (?:is )?(?:numb|numbness|tingling|hurts)\b.{0,80}\bchest\b",
    rf"\b{_WHO}\b.{{0,40}}\b(?:having|have|had) (?:a |an )?(?:heart attack|stroke|seizure|anaphylactic|cardiac arrest)",
    r"\b(?:is|i'm|im|think|thinks) (?:having|going into) (?:a |an )?(?:heart attack|stroke|seizure|anaphyla)",
    # Breathing and consciousness.
    rf"\b{_WHO}\b.{{0,40}}\b(?:not breathing|isn't breathing|isnt breathing|stopped breathing|"
    r"can't breathe|cant breathe|cannot breathe|can't catch (?:my|his|her|their) breath|turning blue)\b",
    rf"\b{_WHO}\b.{{0,40}}\b(?:unresponsive|unconscious|passed out and|won't wake up|wont wake up|"
    r"can't wake|cant wake|collapsed)\b",
    # Poisoning and overdose happening now.
    rf"\b{_WHO}\b.{{0,40}}\b(?:swallowed|drank|ate|ingested|took)\b.{{0,40}}\b(?:bleach|drain cleaner|poison|"
    r"antifreeze|detergent pod|battery|batteries|rat poison|pesticide|weed killer|lye|mushrooms|whole bottle|"
    r"entire bottle|bottle of|too many|a lot of (?:pills|tablets)|handful of)",
    rf"\b{_WHO}\b.{{0,30}}\b(?:overdosed|overdosing|od'd|oded|took an overdose|have overdosed|has overdosed)\b",
    # Stroke signs.
    r"\b(?:face|mouth|smile) (?:is |started |suddenly )?(?:drooping|droops|drooped)\b",
    r"\b(?:sudden|suddenly)\b.{0,30}\b(?:slurred speech|slurring|numbness on one side|weakness on one side|"
    r"can't move (?:my|his|her) (?:arm|leg)|worst headache)\b",
    r"\bslurred speech\b.{0,60}\b(?:face|arm|weak|numb|droop)",
    # Bleeding, allergy, choking, seizure.
    r"\b(?:bleeding|blood) (?:heavily|won't stop|wont stop|will not stop|everywhere|is spurting|a lot)\b",
    r"\b(?:throat|tongue) (?:is |feels )?(?:closing|swelling|swollen shut)\b",
    rf"\b{_WHO}\b.{{0,30}}\b(?:choking|is seizing|having convulsions|convulsing)\b",
    r"\b(?:severe allergic reaction|anaphylaxis|anaphylactic shock)\b.{0,40}\b(?:now|right now|having|"
    r"help|epipen|can't breathe)",
]

_CRISIS = [re.compile(p) for p in _CRISIS_PATTERNS]
_EMERGENCY = [re.compile(p) for p in _EMERGENCY_PATTERNS]


# "What are the signs someone is having a stroke?" asks for information, about nobody in particular.
_INFORMATIONAL = re.compile(r"^(?:what|how|why|when|which|can you explain|explain)\b.{0,40}\b(?:signs?|symptoms?|"
                            r"treat\w*|paramedics|doctors|hospitals?|first aid|causes?|happens|tell if|recogni[sz]e)\b")
_PERSONAL = re.compile(r"\b(?:i|i'm|im|me|my|we|our|us)\b")
# Emergencies an informational question may be about; the answer then opens with the hint below
# instead of escalating a person who only asked what the signs are.
_EMERGENCY_TOPIC = re.compile(r"\b(?:heart attack|cardiac arrest|stroke|anaphyla\w*|severe allergic reaction|"
                              r"overdose|poisoning|sepsis|seizure|choking|not breathing|chest pain)\b")
EMERGENCY_HINT = ("If this is happening to you or someone with you right now, call your local emergency "
                  "number now (911 in the US, 112 in the EU, 999 in the UK).")


def crisis_check(text: str, policy: PackPolicy) -> list[Finding]:
    """Escalation findings for `text`: emergency first (it must come before anything else)."""
    norm = normalise(text)
    findings: list[Finding] = []
    informational = bool(_INFORMATIONAL.search(norm)) and not _PERSONAL.search(norm)
    for pattern in [] if informational else _EMERGENCY:
        if pattern.search(norm):
            findings.append(Finding("crisis.emergency", "escalate", kind="emergency",
                                    message=policy.emergency_text))
            break
    for pattern in _CRISIS:
        if pattern.search(norm):
            findings.append(Finding("crisis.self_harm", "escalate", kind="crisis",
                                    message=policy.crisis_text))
            break
    if informational and not findings and _EMERGENCY_TOPIC.search(norm):
        findings.append(Finding("crisis.emergency_info", "disclaim", kind="emergency", message=EMERGENCY_HINT))
    return findings
