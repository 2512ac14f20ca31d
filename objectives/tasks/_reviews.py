"""A generated text-classification set: restaurant reviews labelled by aspect and sentiment.

No text data set ships with the libraries this project may depend on, and nothing may be
downloaded at run time, so the embedded text task generates its data: short English
restaurant reviews built from a grammar, each labelled with the **aspect** (food,
service, price) and **sentiment** (negative, positive) of its *main* clause — six
classes. The label is a rule of the sentence, not of its words:

* negation flips a clause (``"the soup was not bland"`` is positive),
* contrast picks the clause: ``"X but Y"`` and ``"although X, Y"`` take ``Y``;
  ``"X, although Y"`` and ``"X, even though Y"`` take ``X``,
* distractors (``"we came on a tuesday"``) carry no label,
* a small fraction of labels is flipped (``noise``), as in real annotation.

A bag-of-words model therefore cannot solve it, a fine-tuned transformer can, and
removing attention capacity costs accuracy — what the compression search needs to see.
The generator is a pure function of its seed.
"""

from __future__ import annotations

import random

ASPECTS = ("food", "service", "price")
LABELS = tuple(f"{a}-{s}" for a in ASPECTS for s in ("negative", "positive"))

_NOUNS = {
    "food": (
        "pasta", "pizza", "soup", "steak", "salad", "bread", "dessert", "curry", "burger",
        "fish", "sauce", "noodles", "risotto", "chicken", "lamb", "tacos", "sushi", "fries",
        "cake", "omelette", "dumplings", "ramen", "food", "starter", "main course",
    ),
    "service": (
        "waiter", "waitress", "staff", "service", "host", "manager", "bartender", "server",
        "hostess", "team", "crew", "cashier", "owner", "chef at the counter", "delivery driver",
    ),
    "price": (
        "bill", "price", "prices", "cost", "wine list pricing", "set menu price", "tab",
        "check", "lunch deal", "value", "price of the drinks", "corkage fee", "total",
    ),
}
_ADJ = {
    ("food", 1): (
        "delicious", "tasty", "fresh", "flavorful", "perfectly cooked", "superb", "crispy",
        "tender", "amazing", "excellent", "wonderful", "mouthwatering", "good", "great",
    ),
    ("food", 0): (
        "bland", "stale", "soggy", "overcooked", "cold", "greasy", "tasteless", "burnt",
        "awful", "terrible", "disgusting", "dry", "bad", "mediocre",
    ),
    ("service", 1): (
        "friendly", "attentive", "helpful", "polite", "quick", "welcoming", "professional",
        "warm", "charming", "excellent", "wonderful", "kind", "good", "great",
    ),
    ("service", 0): (
        "rude", "slow", "careless", "unfriendly", "dismissive", "inattentive", "grumpy",
        "clueless", "awful", "terrible", "sloppy", "impatient", "bad", "mediocre",
    ),
    ("price", 1): (
        "reasonable", "fair", "cheap", "affordable", "a bargain", "a steal", "modest",
        "good value", "honest", "low", "great", "excellent", "good", "fine",
    ),
    ("price", 0): (
        "outrageous", "steep", "ridiculous", "a rip-off", "inflated", "absurd", "too high",
        "overpriced", "insane", "awful", "terrible", "excessive", "bad", "mediocre",
    ),
}
_NEG = ("not", "never", "hardly", "far from", "not at all", "by no means")
_INTENS = ("", "", "", "really", "very", "quite", "truly", "rather", "so", "incredibly")
_VERB = ("was", "was", "is", "seemed", "felt", "turned out to be", "looked")
_DET = ("the", "the", "the", "our", "my", "their")
_DISTRACT = (
    "we came on a tuesday", "my sister picked the place", "it was raining outside",
    "we sat by the window", "the place was packed", "we had a reservation at eight",
    "it was our anniversary", "the music was loud", "parking was easy",
    "we ordered for the whole table", "i went with two colleagues", "the decor is modern",
)


def _clause(rng: random.Random, aspect: str, positive: bool) -> str:
    negated = rng.random() < 0.35
    adj_pol = positive != negated
    words = [
        rng.choice(_DET), rng.choice(_NOUNS[aspect]), rng.choice(_VERB),
    ]
    if negated:
        words.append(rng.choice(_NEG))
    intens = rng.choice(_INTENS)
    if intens:
        words.append(intens)
    words.append(rng.choice(_ADJ[(aspect, int(adj_pol))]))
    return " ".join(words)


def _review(rng: random.Random) -> tuple[str, int]:
    aspect = rng.choice(ASPECTS)
    positive = rng.random() < 0.5
    main = _clause(rng, aspect, positive)
    form = rng.random()
    if form < 0.3:
        text = main
    else:
        other_aspect = rng.choice(ASPECTS)
        # The other clause disagrees in sentiment most of the time, so the rule matters.
        other_pos = (not positive) if rng.random() < 0.8 else positive
        other = _clause(rng, other_aspect, other_pos)
        if form < 0.55:
            text = f"{other} but {main}"
        elif form < 0.75:
            text = f"although {other}, {main}"
        elif form < 0.9:
            text = f"{main}, although {other}"
        else:
            text = f"{main}, even though {other}"
    if rng.random() < 0.3:
        d = rng.choice(_DISTRACT)
        text = f"{d}. {text}" if rng.random() < 0.5 else f"{text}. {d}"
    label = ASPECTS.index(aspect) * 2 + int(positive)
    return text, label


def generate_reviews(n: int, *, seed: int = 0, noise: float = 0.03) -> tuple[list[str], list[int]]:
    """``n`` generated reviews and their labels (indices into ``LABELS``).

    Args:
        n: Number of examples.
        seed: The output is a pure function of ``(n, seed, noise)``.
        noise: Fraction of labels replaced by a uniformly drawn other label.
    """
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    for _ in range(n):
        text, label = _review(rng)
        if rng.random() < noise:
            label = rng.choice([c for c in range(len(LABELS)) if c != label])
        texts.append(text)
        labels.append(label)
    return texts, labels
