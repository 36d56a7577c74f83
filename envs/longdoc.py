"""Procedural long-document QA for memory-agent episodes, generated locally and deterministically per seed.

A task is a report-like document (paragraphs of log sentences built from fixed word lists) with planted fact
sentences, a question whose answer needs those facts, and a short gold answer:

    needle    one planted fact (access code, age, door colour, birthplace, locker, radio channel)
    multihop  a two-hop chain whose facts sit in different thirds of the document
              (person -> company/society/boat/college -> city/town/port/year)
    count     2..6 occurrences of one event (cargo arrivals, pump alarms, inspector visits)

Every kind also plants distractors: the same kind of sentence about other made-up names. A fact's keyword is
a made-up proper name or code that occurs only in the fact sentences (and the question), so a good searcher
finds the facts by searching for it; the gold answer occurs nowhere else in the document. Both are checked
after generation, and a failing draw is redrawn from the same generator, so tasks stay deterministic.

Seeds: split_tasks draws train tasks from seeds [0, HELDOUT_SEED_OFFSET) and held-out tasks from
[HELDOUT_SEED_OFFSET, 2 * HELDOUT_SEED_OFFSET), so the two splits never share a task.

Stdlib only (no Ray, no downloads).
"""
from __future__ import annotations

import bisect
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable

KINDS = ("needle", "multihop", "count")
MIN_LENGTH, MAX_LENGTH = 200, 200_000
HELDOUT_SEED_OFFSET = 10**12  # held-out task seeds start here; train seeds (cluster/config/seeds.py memory_tasks) stay below it
_ATTEMPTS = 50  # redraws before giving up on a (seed, kind, length); a redraw is rare

# ---------------------------------------------------------------------------------------------------------
# Filler vocabulary: ordinary lower-case words (no colours, no number words) so made-up names never collide.
_WORDS: dict[str, list[str]] = {
    "role": ["crew", "inspector", "foreman", "supervisor", "technician", "clerk", "driver", "engineer",
             "auditor", "surveyor", "courier", "mechanic", "operator", "electrician", "pilot", "steward",
             "guard", "planner", "chemist", "archivist", "dispatcher", "welder", "carpenter", "rigger", "nurse",
             "cook", "manager", "porter", "deckhand", "radio officer"],
    "roles": ["crews", "inspectors", "foremen", "supervisors", "technicians", "clerks", "drivers", "engineers",
              "auditors", "surveyors", "couriers", "mechanics", "operators", "electricians", "guards", "planners",
              "welders", "carpenters", "riggers", "porters", "deckhands", "volunteers", "trainees", "contractors"],
    "verb": ["inspected", "repaired", "cleaned", "checked", "moved", "replaced", "logged", "sealed", "measured",
             "tested", "loaded", "unloaded", "counted", "labelled", "stacked", "sorted", "weighed", "secured",
             "adjusted", "calibrated", "reviewed", "recorded", "cleared", "examined", "oiled", "tightened",
             "polished", "serviced", "repacked", "photographed", "catalogued", "returned", "greased", "patched",
             "relocated", "tagged"],
    "obj": ["pump", "valve", "generator", "conveyor", "crane", "forklift", "ladder", "boiler", "hatch", "ramp",
            "gate", "fence", "shed", "ledger", "manifest", "radio", "lantern", "compressor", "winch", "pallet",
            "hose", "filter", "panel", "cable", "barrier", "trailer", "scale", "shelf", "cabinet", "heater",
            "anchor", "tarpaulin", "drum", "toolbox", "stretcher", "hoist", "bollard", "rope", "fuse box"],
    "objs": ["pumps", "valves", "generators", "crates", "ladders", "hatches", "ramps", "gates", "ledgers",
             "manifests", "radios", "lanterns", "winches", "pallets", "hoses", "filters", "panels", "cables",
             "barriers", "trailers", "shelves", "cabinets", "heaters", "anchors", "drums", "toolboxes", "ropes",
             "batteries", "helmets", "gloves", "buckets", "tyres", "sandbags", "blankets", "spare parts"],
    "place": ["warehouse", "depot", "yard", "harbour", "quay", "workshop", "canteen", "laboratory", "garage",
              "storeroom", "office", "terminal", "platform", "pier", "hangar", "annex", "basement", "courtyard",
              "station", "mill", "boiler room", "loading bay", "control room", "pump house", "gatehouse"],
    "dir": ["north", "south", "east", "west", "upper", "lower", "main", "old", "new", "rear", "front", "outer",
            "inner", "central", "far"],
    "adj": ["damaged", "rusty", "loose", "worn", "faulty", "spare", "heavy", "empty", "cracked", "clean",
            "dusty", "noisy", "sturdy", "fragile", "narrow", "wide", "temporary", "broken", "bent", "dented",
            "leaking", "new", "used", "mislabelled", "unlabelled", "sealed", "wet", "frozen", "stiff", "tidy"],
    "adverb": ["carefully", "quickly", "briefly", "again", "quietly", "thoroughly", "slowly", "routinely",
               "promptly", "patiently", "cautiously", "methodically"],
    "pace": ["early", "late", "slowly", "promptly", "on schedule", "behind schedule"],
    "time": ["morning", "afternoon", "evening", "night", "weekend", "early", "late", "relief"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "weather": ["rain", "wind", "fog", "frost", "heat", "snow", "sleet", "drizzle", "hail", "storm"],
    "reason": ["safety", "maintenance", "inventory", "training", "budget", "schedule", "insurance",
               "compliance", "fire", "hygiene"],
    "container": ["crate", "barrel", "sack", "box", "cask", "pallet", "bundle", "carton"],
}

# Filler sentence templates: each slot takes one entry of its word list ({place2} draws "place" again;
# {n} draws a number 2..99 other than the gold answer). Short ones only close a document at its exact length.
_FILLER = [
    "The {role} {verb} the {adj} {obj} near the {dir} {place}.",
    "During the {time} shift, the {roles} {verb} {n} {objs} in the {place}.",
    "{weekday} began with {weather} over the {dir} {place}, so work started {pace}.",
    "No incidents were reported at the {place} during the {time} shift.",
    "The {reason} review of the {dir} {place} was postponed until {weekday}.",
    "The {adj} {obj} found in the {place} was sent to the {dir} {place2} for repair.",
    "The {role} noted that the {obj} in the {place} looked {adj}.",
    "{n} {objs} were moved from the {place} to the {dir} {place2}.",
    "The {roles} {verb} the {objs} {adverb} before the {time} shift ended.",
    "Work at the {dir} {place} paused for {n} minutes because of the {weather}.",
    "The {place} log was reviewed by the {role} on {weekday}.",
    "All {objs} in the {place} were {verb} {adverb}.",
    "Supplies for the {place} arrived {pace}.",
    "Visibility near the {place} was poor because of the {weather}.",
    "The {reason} checklist for the {place} was completed.",
    "A {container} of {adj} {objs} arrived at dock {n}.",
    "The access log for the {dir} {place} was checked by the {role}.",
    "The {role} and the {role2} {verb} the {obj} together.",
    "After the {reason} briefing, the {roles} returned to the {place}.",
    "The {role} reported that {n} {objs} were still missing from the {place}.",
    "Several {objs} in the {dir} {place} had to be {verb} again.",
    "The {time} report from the {place} mentioned one {adj} {obj}.",
    "Nothing unusual was observed at the {place}.",
    "The {role} signed off the {reason} report on {weekday}.",
    "Stock levels in the {place} were checked by the {roles}.",
    "The {obj} was {verb}.",
    "Nothing unusual was observed.",
    "Checks continued {adverb}.",
    "Work resumed.",
    "Noted.",
]
_SLOT = re.compile(r"\{(\w+)\}")

# ---------------------------------------------------------------------------------------------------------
# Made-up names: syllables chosen so names read as proper nouns and avoid the filler's English words.
_ONSETS = ["B", "C", "D", "F", "G", "H", "K", "L", "M", "N", "P", "Qu", "R", "S", "T", "V", "Z", "Br", "Dr",
           "Gr", "Kr", "Tr", "Th", "Vr", "Sk", "St", "Orl", "Ul", "Ys", "Ar", "El"]
_VOWELS = ["a", "e", "i", "o", "u"]
_MIDS = ["r", "l", "n", "v", "m", "s", "th", "nn", "rv", "lm", "rk", "st", "sk", "z", "ld", "nt"]
_ENDINGS = ["holt", "nel", "vik", "mora", "dane", "rick", "wyn", "rath", "mere", "dell", "gard", "lin",
            "vane", "oss", "ard", "en", "ova", "ith", "ar", "ek", "ley", "ion", "ax", "ette", "und", "orn"]
_FIRST_NAMES = ["Ilsa", "Maren", "Teodor", "Anselm", "Brida", "Corin", "Dagny", "Elio", "Fenna", "Gideon",
                "Hester", "Ivo", "Jorun", "Kasimir", "Liesel", "Milo", "Nadia", "Oskar", "Petra", "Rune",
                "Saskia", "Tobias", "Ulla", "Vera", "Wim", "Ysolde", "Agnes", "Bruno", "Clara", "Edda"]
_COLOURS = ["crimson", "amber", "teal", "violet", "ochre", "scarlet", "indigo", "maroon", "turquoise",
            "magenta", "lilac", "saffron", "cobalt", "emerald"]
_COMPANY_KINDS = ["Logistics", "Freight", "Holdings", "Textiles", "Mining", "Shipping", "Foundry", "Ceramics"]
_GOODS = ["figs", "plums", "olives", "apricots", "walnuts", "lemons", "dates", "chestnuts", "pears",
          "almonds", "raisins", "quinces", "hazelnuts", "cherries"]
_PLURAL = {"crate": "crates", "barrel": "barrels", "sack": "sacks", "box": "boxes", "cask": "casks",
           "pallet": "pallets", "bundle": "bundles", "carton": "cartons"}
_LEADS = ["", "", "", "According to the records, ", "For the record, ", "It was confirmed that ",
          "The ledger states that "]

# Every fixed word a document can contain outside a made-up name: a fresh name must not occur inside it.
_FIXED_TEXT = " ".join([*(" ".join(v) for v in _WORDS.values()), *_FILLER, *_LEADS, *_FIRST_NAMES, *_COLOURS,
                        *_COMPANY_KINDS, *_GOODS, *_PLURAL.values(),
                        ("access code for is years old how door painted what colour was born in the town of "
                        "which spare key kept locker beacon transmits on channel works for company "
                        "headquartered city is a member society meets does belongs to owns boat called moored "
                        "at port studied college founded year many arrived docks alarm pump went off during "
                        "shift times go inspector signed visitor log gate sign archive vault depot boathouse "
                        "chapel observatory lighthouse granary van tractor motorboat generator")]).lower()


class _Names:
    """Fresh made-up names for one task: distinct, not inside each other, never inside the fixed text."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: list[str] = []

    def _ok(self, name: str) -> bool:
        low = name.lower()
        return low not in _FIXED_TEXT and all(low not in u and u not in low for u in self.used)

    def name(self) -> str:
        r = self.rng
        while True:
            name = r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_MIDS)
            if r.random() < 0.3:
                name += r.choice(_VOWELS) + r.choice(_MIDS)
            name += r.choice(_ENDINGS)
            if self._ok(name):
                self.used.append(name.lower())
                return name

    def code(self) -> str:
        r = self.rng
        while True:
            name = "".join(r.choice(string.ascii_uppercase) for _ in range(2)) + str(r.randint(100, 999))
            if self._ok(name):
                self.used.append(name.lower())
                return name


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _lead(rng: random.Random, sentence: str) -> str:
    """A fact sentence with an optional report-style lead-in, so facts do not stand out by their first word."""
    lead = rng.choice(_LEADS)
    return _cap(lead + sentence) if lead else _cap(sentence)


# ---------------------------------------------------------------------------------------------------------
# Kind builders. Each returns (question, answer, facts, distractors): facts are (sentence, keyword, target
# position as a fraction of the document), distractors are (sentence, target fraction).
_Fact = tuple[str, str, float]
_Spec = tuple[str, str, list[_Fact], list[tuple[str, float]]]

# needle templates: (rng, names, first name) -> (fact without lead-in, question, answer, keyword)
_Needle = Callable[[random.Random, _Names, str], tuple[str, str, str, str]]


def _access_code(r: random.Random, n: _Names, first: str) -> tuple[str, str, str, str]:
    k, place = n.name(), r.choice(["archive", "vault", "depot", "records office", "server room"])
    code = str(r.randint(1000, 9999))
    return (f"the access code for the {k} {place} is {code}.",
            f"What is the access code for the {k} {place}?", code, k)


def _age(r: random.Random, n: _Names, first: str) -> tuple[str, str, str, str]:
    k, age = n.name(), str(r.randint(19, 88))
    return f"{first} {k} is {age} years old.", f"How old is {first} {k}?", age, k


def _door_colour(r: random.Random, n: _Names, first: str) -> tuple[str, str, str, str]:
    k, building = n.name(), r.choice(["boathouse", "chapel", "observatory", "lighthouse", "granary"])
    colour = r.choice(_COLOURS)
    return (f"the door of the {k} {building} is painted {colour}.",
            f"What colour is the door of the {k} {building}?", colour, k)


def _birthplace(r: random.Random, n: _Names, first: str) -> tuple[str, str, str, str]:
    k, town = n.name(), n.name()
    return f"{first} {k} was born in the town of {town}.", f"In which town was {first} {k} born?", town, k


def _locker(r: random.Random, n: _Names, first: str) -> tuple[str, str, str, str]:
    k, vehicle, locker = n.name(), r.choice(["van", "tractor", "motorboat", "generator"]), str(r.randint(100, 999))
    return (f"the spare key for the {k} {vehicle} is kept in locker {locker}.",
            f"In which locker is the spare key for the {k} {vehicle} kept?", locker, k)


def _channel(r: random.Random, n: _Names, first: str) -> tuple[str, str, str, str]:
    k, channel = n.name(), str(r.randint(10, 99))
    return (f"the {k} beacon transmits on channel {channel}.",
            f"On which channel does the {k} beacon transmit?", channel, k)


_NEEDLES: list[_Needle] = [_access_code, _age, _door_colour, _birthplace, _locker, _channel]


def _needle(r: random.Random, n: _Names) -> _Spec:
    template = r.choice(_NEEDLES)
    fact, question, answer, keyword = template(r, n, r.choice(_FIRST_NAMES))
    distractors, want = [], r.randint(1, 2)
    while len(distractors) < want:
        other, _, value, _ = template(r, n, r.choice(_FIRST_NAMES))
        if value != answer:
            distractors.append((_lead(r, other), r.uniform(0.02, 0.98)))
    return question, answer, [(_lead(r, fact), keyword, r.uniform(0.05, 0.95))], distractors


# multihop chains: (hop 1 "person -> B", hop 2 "B -> answer", question, B is a company, answer is a year)
_CHAINS = [
    ("{first} {person} works for {b}.", "{b} is headquartered in {x}.",
     "In which city is the company {first} {person} works for headquartered?", True, False),
    ("{first} {person} is a member of the {b} Society.", "the {b} Society meets in the town of {x}.",
     "In which town does the society that {first} {person} belongs to meet?", False, False),
    ("{first} {person} owns a boat called the {b}.", "the {b} is moored at the port of {x}.",
     "At which port is the boat owned by {first} {person} moored?", False, False),
    ("{first} {person} studied at {b} College.", "{b} College was founded in {x}.",
     "In which year was the college that {first} {person} studied at founded?", False, True),
]


def _multihop(r: random.Random, n: _Names) -> _Spec:
    link, where, question, company, year = r.choice(_CHAINS)

    def chain(first: str) -> tuple[str, str, str, str, str]:
        """(hop 1, hop 2, person keyword, B keyword, answer) for a fresh chain."""
        person, b = n.name(), n.name()
        x = str(r.randint(1700, 1989)) if year else n.name()
        full_b = f"{b} {r.choice(_COMPANY_KINDS)}" if company else b
        return link.format(first=first, person=person, b=full_b), where.format(b=full_b, x=x), person, b, x

    first = r.choice(_FIRST_NAMES)
    hop1, hop2, person, b_word, answer = chain(first)
    third1, third2 = r.sample(range(3), 2)
    facts = [(_lead(r, hop1), person, (third1 + r.uniform(0.3, 0.7)) / 3),
             (_lead(r, hop2), b_word, (third2 + r.uniform(0.3, 0.7)) / 3)]
    # A distractor chain (its person sometimes shares the first name) and maybe one more loose link.
    while True:
        d1, d2, _, _, x2 = chain(first if r.random() < 0.5 else r.choice(_FIRST_NAMES))
        if x2 != answer:
            break
    distractors = [d1, d2]
    if r.random() < 0.5:
        d3, d4, _, _, _ = chain(r.choice(_FIRST_NAMES))
        distractors.append(r.choice([d3, d4]))
    question = question.format(first=first, person=person)
    return question, answer, facts, [(_lead(r, d), r.uniform(0.02, 0.98)) for d in distractors]


def _count(r: random.Random, n: _Names) -> _Spec:
    k = r.randint(2, 6)
    numbers = [str(i) for i in range(7, 60)]  # dock numbers: never the count itself
    family = r.randrange(3)

    def day() -> str:
        return r.choice(_WORDS["weekday"])

    if family == 0:  # cargo; distractors: another brand of the same goods, or other goods altogether
        container, goods = r.choice(list(_PLURAL)), r.choice(_GOODS)

        def event(name: str, same: bool = True) -> str:
            c, g = (container, goods) if same else (r.choice(list(_PLURAL)), r.choice(_GOODS))
            return f"A {c} of {name} {g} arrived at dock {r.choice(numbers)} on {day()}."

        keyword = n.name()
        question = f"How many {_PLURAL[container]} of {keyword} {goods} arrived at the docks?"
    elif family == 1:  # alarms on coded pumps
        def event(name: str, same: bool = True) -> str:
            return f"The alarm on pump {name} went off during the {r.choice(_WORDS['time'])} shift on {day()}."

        keyword = n.code()
        question = f"How many times did the alarm on pump {keyword} go off?"
    else:  # inspector visits
        def event(name: str, same: bool = True) -> str:
            return f"Inspector {name} signed the visitor log at the {r.choice(_WORDS['dir'])} gate on {day()}."

        keyword = n.name()
        question = f"How many times did Inspector {keyword} sign the visitor log?"
    facts = [(event(keyword), keyword, (i + r.uniform(0.25, 0.75)) / k) for i in range(k)]
    distractors = [(event(n.code() if family == 1 else n.name(), r.random() < 0.5), r.uniform(0.02, 0.98))
                   for _ in range(r.randint(2, 4))]
    return question, str(k), facts, distractors


_BUILDERS: dict[str, Callable[[random.Random, _Names], _Spec]] = {
    "needle": _needle, "multihop": _multihop, "count": _count}


# ---------------------------------------------------------------------------------------------------------
def _templates() -> list[tuple[str, list[tuple[str, str]], int]]:
    """(template, [(slot, word list)], words when every slot takes a one-word entry)."""
    return [(t, [(s, s.rstrip("0123456789")) for s in _SLOT.findall(t)], len(t.split())) for t in _FILLER]


_PARSED = _templates()
_LONG = [p for p in _PARSED if p[2] >= 5]
_SINGLE_WORDS = {k: [w for w in v if " " not in w] for k, v in _WORDS.items()}
_TAIL = 2 * max(p[2] for p in _PARSED)  # below this many words left, only exact-size sentences are drawn


def _filler(r: random.Random, words: int, numbers: list[str]) -> list[str]:
    """Filler sentences totalling exactly `words` words: free draws first, then one-word slot entries only,
    so each closing sentence has its template's exact size."""
    out, left, choice = [], words, r.choice
    lists = dict(_WORDS, n=numbers)
    while left >= _TAIL:
        template, slots, _ = choice(_LONG)
        sentence = template.format(**{s: choice(lists[w]) for s, w in slots})
        out.append(sentence)
        left -= sentence.count(" ") + 1
    lists = dict(_SINGLE_WORDS, n=numbers)
    while left > 0:
        template, slots, size = choice([p for p in _PARSED if p[2] <= left])
        out.append(template.format(**{s: choice(lists[w]) for s, w in slots}))
        left -= size
    return out


def _attempt(r: random.Random, kind: str, length: int) -> dict | None:
    question, answer, facts, distractors = _BUILDERS[kind](r, _Names(r))
    items = [(f * length, s, i) for i, (s, _, f) in enumerate(facts)] + \
            [(f * length, s, None) for s, f in distractors]
    fixed = sum(len(s.split()) for _, s, _ in items)
    numbers = [str(i) for i in range(2, 100) if str(i) != answer]
    filler = _filler(r, length - fixed, numbers)
    sizes = [len(s.split()) for s in filler]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)

    # Insert each planted sentence at the filler boundary that puts it nearest its target word position.
    inserts: dict[int, list[tuple[str, int | None]]] = {}
    placed, previous = 0, 0
    for target, sentence, fact_index in sorted(items, key=lambda item: item[0]):
        want = target - placed
        i = bisect.bisect_left(starts, want)
        if i == len(starts) or (i > 0 and want - starts[i - 1] < starts[i] - want):
            i -= 1
        i = max(i, previous)
        inserts.setdefault(i, []).append((sentence, fact_index))
        placed, previous = placed + len(sentence.split()), i

    sentences: list[str] = []
    offsets: dict[int, int] = {}
    distractor_offsets: list[tuple[str, int]] = []
    position = 0
    for i in range(len(filler) + 1):
        for sentence, fact_index in inserts.get(i, ()):
            if fact_index is None:
                distractor_offsets.append((sentence, position))
            else:
                offsets[fact_index] = position
            sentences.append(sentence)
            position += len(sentence.split())
        if i < len(filler):
            sentences.append(filler[i])
            position += sizes[i]

    paragraphs, i = [], 0
    while i < len(sentences):
        size = r.randint(3, 7)
        paragraphs.append(" ".join(sentences[i:i + size]))
        i += size
    text = "\n\n".join(paragraphs)

    # Checks: keywords only in the facts, the answer only in the facts, multihop hops in different thirds.
    fact_text = " ".join(s for s, _, _ in facts).lower()
    low = text.lower()
    if any(low.count(kw.lower()) != fact_text.count(kw.lower()) for _, kw, _ in facts):
        return None
    answer_re = re.compile(rf"(?<!\w){re.escape(answer.lower())}(?!\w)")
    if len(answer_re.findall(low)) != len(answer_re.findall(fact_text)):
        return None
    if kind == "multihop" and offsets[0] * 3 // length == offsets[1] * 3 // length:
        return None
    return {
        "question": question, "answer": answer, "documents": {"doc": text},
        "facts": [{"sentence": s, "keyword": kw, "word_offset": offsets[i]} for i, (s, kw, _) in enumerate(facts)],
        "distractors": [{"sentence": s, "word_offset": o} for s, o in distractor_offsets],
    }


def make_task(seed: int, kind: str, length: int) -> dict:
    """One QA task over a document of exactly `length` words; the same (seed, kind, length) always gives the
    same dict: id, kind, question, answer, documents {"doc": text}, facts [{sentence, keyword, word_offset}]
    (multihop in hop order), length, and distractors [{sentence, word_offset}] for analysis and tests."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not isinstance(length, int) or isinstance(length, bool) or not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"length must be an int in {MIN_LENGTH}..{MAX_LENGTH} words, got {length!r}")
    # String seeds are hashed with SHA-512 by random.Random, so this is stable across processes and versions.
    rng = random.Random(f"evoforge-longdoc/{kind}/{length}/{seed}")
    for _ in range(_ATTEMPTS):
        task = _attempt(rng, kind, length)
        if task is not None:
            return {"id": f"{kind}-{length}-{seed}", "kind": kind, "question": task["question"],
                    "answer": task["answer"], "documents": task["documents"], "facts": task["facts"],
                    "length": length, "distractors": task["distractors"]}
    raise RuntimeError(f"no valid {kind} task of {length} words for seed {seed} after {_ATTEMPTS} draws")


def split_tasks(seed: int, kinds: Iterable[str], lengths: Iterable[int], n: int, heldout: bool) -> list[dict]:
    """n tasks cycling over kinds x lengths with task seeds seed, seed+1, ...; held-out ones shifted by
    HELDOUT_SEED_OFFSET so that train and held-out tasks never coincide."""
    kinds, lengths = list(kinds), list(lengths)
    if not kinds or not lengths:
        raise ValueError("kinds and lengths must be non-empty")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 or seed + n > HELDOUT_SEED_OFFSET:
        raise ValueError(f"seed must be an int with 0 <= seed and seed + n <= {HELDOUT_SEED_OFFSET}, got {seed!r}")
    combos = [(k, length) for k in kinds for length in lengths]
    base = HELDOUT_SEED_OFFSET + seed if heldout else seed
    return [make_task(base + i, *combos[i % len(combos)]) for i in range(n)]


# ---------------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def _normalize(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def answer_match(prediction: str, gold: str) -> float:
    """1.0 when prediction and gold are equal after normalisation, else 0.0."""
    return float(_normalize(prediction) == _normalize(gold))


HIT_MAX_WORDS = 16  # a reply longer than this is no hit: listing candidates does not pay


def answer_hit(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold answer appears as whole words in a normalised reply of at most
    HIT_MAX_WORDS words ("The access code is 4817." hits "4817"; "48170" and a 40-word list do not)."""
    pred, ref = _normalize(prediction).split(), _normalize(gold).split()
    if not ref or len(pred) > HIT_MAX_WORDS:
        return 0.0
    return float(any(pred[i:i + len(ref)] == ref for i in range(len(pred) - len(ref) + 1)))


def answer_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between the normalised prediction and gold (1.0 when both normalise to nothing)."""
    pred, ref = _normalize(prediction).split(), _normalize(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def truncated_prompt(task: dict, max_words: int) -> str:
    """The one-turn baseline's prompt: as much of the document as fits in max_words words, then the question."""
    if not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 1:
        raise ValueError(f"max_words must be a positive int, got {max_words!r}")
    text = task["documents"]["doc"]
    parts = text.split(None, max_words)
    if len(parts) > max_words:  # cut: keep the original layout up to the end of the max_words-th word
        kept = text[:len(text) - len(parts[-1])].rstrip()
        shown = f"{kept}\n\n[Document truncated: the first {max_words} of {len(text.split())} words are shown.]"
    else:
        shown = text
    return f"Document:\n{shown}\n\nQuestion: {task['question']}\nAnswer with the answer only."
