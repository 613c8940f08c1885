"""Prompt-injection and jailbreak signals: heuristics plus a small trained classifier.

Heuristics catch the classic shapes (ignore previous instructions, DAN/developer mode, "repeat your
system prompt", role-play framings used as a wrapper, encoded payloads). The classifier
(`apps.safety.classifier`) scores the message on MiniLM sentence embeddings; it was trained on
prompts written for it under `apps/safety/data/`, never on the evaluation sets under tests/.
A message is blocked when a heuristic fires or the classifier's score passes its threshold.
"""

from __future__ import annotations

import base64
import binascii
import re

from apps.safety.findings import Finding, normalise
from apps.safety.policy import PackPolicy

_HEURISTICS: list[tuple[str, str]] = [
    ("jailbreak.ignore_instructions", r"\b(?:ignore|disregard|forget|override|bypass|skip)\b.{0,40}\b(?:previous|prior|"
     r"above|earlier|all|your|the|any|these|those|system|safety|original)\b.{0,30}\b(?:instructions?|rules|prompts?|"
     r"guidelines|directives|policies|restrictions|constraints|programming|filters?)\b"),
    ("jailbreak.persona", r"\b(?:dan|stan|dude|aim|mongo tom|developer mode|dev mode|god mode|jailbr(?:oken|eak)|"
     r"unfiltered|uncensored|unrestricted|no (?:restrictions|limits|filters|rules|guidelines|morals|ethics))\b.{0,80}"
     r"\b(?:mode|enabled|you are|you will|act as|respond|answer|persona|character|ai|model|chatbot)\b"),
    ("jailbreak.persona", r"\b(?:act|acting|pretend|roleplay|role-play|behave) (?:as|like|to be)\b.{0,60}\b(?:no|without|"
     r"free (?:of|from)|ignor\w*|doesn'?t (?:have|follow|care)|does not (?:have|follow|care)|never refuses?|"
     r"can do anything|not bound|broken free)\b"),
    ("jailbreak.persona", r"\b(?:do anything now|doesn'?t have to follow|does not have to abide|never refuses?|"
     r"without any (?:moral|ethical)|stay in character|two responses|dual responses|\[?🔓|jailbreak)\b"),
    ("injection.prompt_extraction", r"\b(?:repeat|print|show|reveal|display|output|tell me|give me|write out|spell out|"
     r"what (?:is|are|was|were)|list|dump|leak|copy|translate|summari[sz]e)\b.{0,50}\b(?:your|above|initial|"
     r"original|hidden|secret|system|developer|previous)\b.{0,25}\b(?:system prompt|prompt|instructions|"
     r"initial prompt|rules|guidelines|configuration|context window|pre-?prompt|directives|message above)\b"),
    ("injection.prompt_extraction", r"\b(?:everything|all|text|words) (?:above|before) (?:this|here|that)\b|"
     r"\bstarting with (?:\"|')?you are\b|\bbegin(?:ning)? (?:of|with) (?:the|your) (?:conversation|prompt)\b"),
    ("injection.system_override", r"(?:^|\n)\s*(?:system|assistant|developer)\s*:|<\|?(?:im_start|system|"
     r"endoftext)\|?>|\[/?(?:inst|system)\]|###\s*(?:system|instruction)|</?system>|new instructions?:|"
     r"\bend of (?:prompt|instructions)\b"),
    ("jailbreak.hypothetical_harm", r"\b(?:hypothetical(?:ly)?|fictional|in a story|for a novel|for a movie|"
     r"in a world where|imagine)\b.{0,120}\b(?:no (?:laws|rules|restrictions)|illegal|without consequences|"
     r"step[- ]by[- ]step|detailed instructions)\b"),
    ("jailbreak.obfuscation", r"\b(?:decode|decipher|translate from|convert from|interpret)\b.{0,40}\b(?:base64|"
     r"rot13|rot-13|hex|binary|morse|leetspeak|caesar|cipher|reversed?|backwards|atbash|unicode|braille)\b"),
    ("jailbreak.obfuscation", r"\b(?:respond|reply|answer|write) (?:only )?(?:in|using) (?:base64|rot13|hex|"
     r"binary|morse|leetspeak|cipher|reverse)\b"),
]
_COMPILED = [(rule, re.compile(src)) for rule, src in _HEURISTICS]
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_HEX_RUN = re.compile(r"\b(?:[0-9a-fA-F]{2} ?){15,}[0-9a-fA-F]{2}\b")


def _encoded_payload(text: str) -> bool:
    """A long run that decodes to mostly printable ASCII words: an encoded instruction."""
    for match in _B64_RUN.finditer(text):
        chunk = match.group()
        try:
            decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        printable = sum(32 <= b < 127 for b in decoded)
        if decoded and printable / len(decoded) > 0.9 and b" " in decoded:
            return True
    for match in _HEX_RUN.finditer(text):
        decoded = bytes.fromhex(match.group().replace(" ", ""))
        if sum(32 <= b < 127 for b in decoded) / len(decoded) > 0.9 and b" " in decoded:
            return True
    return False


def heuristic_findings(text: str) -> list[Finding]:
    norm = normalise(text)
    findings = []
    seen = set()
    for rule, pattern in _COMPILED:
        if rule not in seen and pattern.search(norm):
            seen.add(rule)
            findings.append(Finding(rule, "block"))
    if _encoded_payload(text):
        findings.append(Finding("jailbreak.encoded_payload", "block"))
    return findings


def rewritten_rule_findings(text: str, policy: PackPolicy) -> list[Finding]:
    """The harm floor on every decoded or rewritten view (base64, ROT13, leetspeak, past tense...):
    the rules see the request the model would understand, not only the characters received."""
    from apps.safety.deobfuscate import views
    from apps.safety.rules import input_rules_check

    findings: list[Finding] = []
    for name, view in views(text)[1:]:
        for finding in input_rules_check(view, policy):
            if finding.action == "block" and all(f.rule != finding.rule for f in findings):
                findings.append(Finding(finding.rule, "block", finding.score, kind=name, message=finding.message))
    return findings


def jailbreak_check(text: str, policy: PackPolicy) -> list[Finding]:
    """Heuristic wrapper findings, the harm floor on rewritten views, and the classifier over all
    views (so a wrapped request is judged on its own as well as the wrapper)."""
    findings = heuristic_findings(text) + rewritten_rule_findings(text, policy)
    from apps.safety import classifier

    findings += classifier.classifier_findings(text)
    return findings
