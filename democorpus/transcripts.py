"""Synthetic transcripts for the demo corpus: plain English whose wording carries an emotion.

A transcript is one emotion-bearing phrase, usually with a neutral filler before or after it, so
a sentence encoder sees clear sentiment words without every line being a
caricature. Which emotion the wording carries is decided by the caller (it may
contradict the label).
"""
from __future__ import annotations

import numpy as np

PHRASES: dict[str, tuple[str, ...]] = {
    "hap": (
        "I'm really happy with how it turned out.",
        "That's lovely, thank you so much.",
        "I feel good about this, I really do.",
        "It makes me smile every time I think about it.",
        "We had such a nice time together.",
        "I'm glad you came, it's so good to see you.",
        "That's sweet of you, I appreciate it.",
        "Everything is going well for us lately.",
        "I'm pleased, honestly, this is nice.",
        "You always cheer me up.",
    ),
    "exc": (
        "Oh my god, this is amazing!",
        "I can't believe it, we actually did it!",
        "Wow, that's incredible news!",
        "This is the best day ever!",
        "I'm so thrilled, I can hardly wait!",
        "Yes! We got it, we really got it!",
        "That's fantastic, let's celebrate tonight!",
        "I'm so excited I could scream!",
        "No way, that is awesome!",
        "Guess what, I got the job!",
    ),
    "ang": (
        "Get out of my face, I'm sick of you.",
        "How dare you talk to me like that!",
        "I'm furious, this is outrageous.",
        "Don't you ever lie to me again!",
        "Shut up and listen to me for once.",
        "You ruined everything, you idiot.",
        "I hate this, I hate all of it.",
        "That's a damn insult and you know it.",
        "Stop yelling at me or I swear I'll leave.",
        "You make me so angry I can't think.",
    ),
    "sad": (
        "I miss him so much, it hurts.",
        "I feel so alone these days.",
        "She's gone and she's never coming back.",
        "I just want to cry, I'm so tired of everything.",
        "Nothing matters anymore, it's hopeless.",
        "I lost it all, every last thing.",
        "It's been so lonely since the funeral.",
        "I'm sorry, I'm just heartbroken.",
        "I don't know how to go on without her.",
        "It's so sad, I can't stop thinking about it.",
    ),
    "fru": (
        "This is so annoying, nothing ever works.",
        "I've been waiting for hours and nobody helps.",
        "Why is this always so complicated?",
        "I keep trying and it keeps failing.",
        "Ugh, I told you three times already.",
        "It's pointless, they never listen to me.",
        "I'm fed up with this stupid form.",
        "Every single time, the same problem again.",
        "I just can't get it to work, it's driving me crazy.",
        "Forget it, this is a waste of my time.",
    ),
    "neu": (
        "I'll be at the office around nine.",
        "The form is on the second page.",
        "We need to fill in the address first.",
        "The bus leaves from the corner of the street.",
        "I think the meeting is on Tuesday.",
        "Can you pass me the papers on the table?",
        "It's the building next to the bank.",
        "I'll call you later this afternoon.",
        "The line starts over there by the window.",
        "We moved here about two years ago.",
    ),
}

FILLERS: tuple[str, ...] = (
    "Anyway.",
    "So, yeah.",
    "Well, okay.",
    "I mean, you know.",
    "Let me see.",
    "Right.",
    "Okay, so.",
    "I guess.",
    "You know what I mean?",
    "Well.",
    "Um, so.",
    "Yeah.",
)


def make_transcript(rng: np.random.Generator, emotion: str) -> str:
    """One line of dialog whose wording carries ``emotion``."""
    phrase = PHRASES[emotion][rng.integers(len(PHRASES[emotion]))]
    form = rng.integers(3)
    if form == 0:
        return phrase
    filler = FILLERS[rng.integers(len(FILLERS))]
    return f"{filler} {phrase}" if form == 1 else f"{phrase} {filler}"
