"""GuessWhat?! games (de Vries et al. 2017): a synthetic scene/dialogue generator and the JSONL loader.

A game is a scene of objects (a category, a COCO-style box `[x, y, w, h]` in
pixels with `y` from the top, an image size), a target object and a yes/no/N/A
dialogue about the target. Both sources return a `Games` record of NumPy
arrays padded to the largest game:

* `dialogues` `[G]` (str): the whole dialogue as one string in GuessWhat's token
  format, `"is it a cup ? <yes> is it on the left ? <n/a>"` (answers as the
  tokens `<yes>`, `<no>`, `<n/a>`); the models tokenize it in-graph;
* `questions` `[G, Q]` (str, `""` padded) and `answers` `[G, Q]` int32
  (0 yes, 1 no, 2 n/a as GuessWhat's `oracle_answers_to_idx`; -1 padded);
* `categories` `[G, O]` int32 (0 = padding; COCO ids 1..90 for the real data,
  1..K for the synthetic one), `boxes` `[G, O, 4]` float32, `object_mask`
  `[G, O]` bool, `image_size` `[G, 2]` (width, height), `target` `[G]` int32.

Sources:

* `synthetic_games` (the embedded default, no download, deterministic by seed):
  scenes of `min_objects..max_objects` objects with a category, a colour and
  a box; the target is uniform among them. A rule questioner asks about the
  target until a single candidate is left (or `max_questions` are asked):
  each question is drawn among those whose truthful answers split the
  remaining candidates, "is it a cup?" / "is it red?" / "is it on the left?"
  (right, at the top, at the bottom). The rule oracle answers truthfully:
  category and colour by equality; "on the left?" is `yes` if the box centre
  is in the left 40 % of the width, `no` if beyond 60 %, `n/a` in between
  (GuessWhat's N/A: the question does not apply); right, top, bottom alike. Colour is *not* among the features the
  paper's non-visual oracle and guesser see (category + box only), as the
  real images' colours are not: those questions are answerable only from the
  image, which bounds the oracle's accuracy as on the real data.
* `load_guesswhat_jsonl`: the released `guesswhat.{train,valid,test}.jsonl.gz`
  (one JSON game per line: `id`, `qas` [{`question`, `answer`, ...}], `image`
  {`width`, `height`, ...}, `objects` [{`id`, `category_id`, `category`,
  `bbox`, `area`}], `object_id`, `status`). Images are not read: the paper's
  best oracle and guesser use only the category and the box.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os

import numpy as np

ANSWERS = ("yes", "no", "n/a")
ANSWER_TOKENS = ("<yes>", "<no>", "<n/a>")
CATEGORIES = ("cup", "ball", "book", "chair", "dog", "car", "plant", "lamp")
COLOURS = ("red", "green", "blue", "yellow")
IMAGE_SIZE = (640, 480)
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Games:
    """Padded arrays of GuessWhat?! games (see module doc)."""

    dialogues: np.ndarray
    questions: np.ndarray
    answers: np.ndarray
    categories: np.ndarray
    boxes: np.ndarray
    object_mask: np.ndarray
    image_size: np.ndarray
    target: np.ndarray
    category_names: dict  # id -> name
    colours: np.ndarray | None = None  # synthetic only: colour index per object (-1 padding)

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index) -> "Games":
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Games(**{k: (v if k == "category_names" or v is None else v[index]) for k, v in fields.items()})

    @property
    def num_categories(self) -> int:
        """Embedding rows for categories: max id + 1 (row 0 is padding/unknown)."""
        return int(max(self.category_names) + 1)


def format_dialogue(questions, answers) -> str:
    """`["Is it a cup?"], [0]` -> `"Is it a cup? <yes>"` (GuessWhat's dialogue token format)."""
    parts = []
    for q, a in zip(questions, answers):
        if a < 0:
            break
        parts.append(f"{q} {ANSWER_TOKENS[int(a)]}")
    return " ".join(parts)


def answer_index(answer: str) -> int:
    key = str(answer).strip().lower()
    if key not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}; expected one of Yes, No, N/A")
    return ANSWERS.index(key)


def _pad_games(records, category_names) -> Games:
    """records: dicts with questions, answers, categories, boxes, image_size, target."""
    n = len(records)
    if n == 0:
        raise ValueError("no games")
    max_q = max(1, max(len(r["questions"]) for r in records))
    max_o = max(len(r["categories"]) for r in records)
    questions = np.full((n, max_q), "", dtype=object)
    answers = np.full((n, max_q), -1, dtype=np.int32)
    categories = np.zeros((n, max_o), dtype=np.int32)
    boxes = np.zeros((n, max_o, 4), dtype=np.float32)
    mask = np.zeros((n, max_o), dtype=bool)
    for i, r in enumerate(records):
        k, o = len(r["questions"]), len(r["categories"])
        questions[i, :k] = r["questions"]
        answers[i, :k] = r["answers"]
        categories[i, :o] = r["categories"]
        boxes[i, :o] = r["boxes"]
        mask[i, :o] = True
    dialogues = np.array([format_dialogue(r["questions"], r["answers"]) for r in records], dtype=object)
    colours = None
    if all("colours" in r for r in records):
        colours = np.full((n, max_o), -1, dtype=np.int32)
        for i, r in enumerate(records):
            colours[i, :len(r["colours"])] = r["colours"]
    return Games(
        colours=colours,
        dialogues=dialogues,
        questions=questions,
        answers=answers,
        categories=categories,
        boxes=boxes,
        object_mask=mask,
        image_size=np.array([r["image_size"] for r in records], dtype=np.float32),
        target=np.array([r["target"] for r in records], dtype=np.int32),
        category_names=dict(category_names),
    )


# ----------------------------------------------------------------------------- synthetic


def rule_answer(kind: str, value, category: int, colour: int, box, image_size) -> int:
    """The truthful answer (index into `ANSWERS`) about an object (see module doc for the rule)."""
    if kind == "category":
        return 0 if category == value else 1
    if kind == "colour":
        return 0 if colour == value else 1
    x, y, w, h = box
    width, height = image_size
    if kind in ("left", "right"):
        rel = (x + 0.5 * w) / width
    elif kind in ("top", "bottom"):
        rel = (y + 0.5 * h) / height  # y from the top, as COCO boxes
    else:
        raise ValueError(f"unknown question kind {kind!r}")
    if 0.4 <= rel <= 0.6:
        return 2
    first = rel < 0.4  # left / top
    return 0 if first == (kind in ("left", "top")) else 1


def question_text(kind: str, value) -> str:
    if kind == "category":
        return f"is it a {CATEGORIES[value - 1]}?"
    if kind == "colour":
        return f"is it {COLOURS[value]}?"
    return {"left": "is it on the left?", "right": "is it on the right?", "top": "is it at the top?",
            "bottom": "is it at the bottom?"}[kind]


def synthetic_games(num_games: int, seed: int = 0, min_objects: int = 3, max_objects: int = 8,
                    max_questions: int = 8, colour_question_rate: float = 0.2,
                    image_size=IMAGE_SIZE) -> Games:
    """`num_games` synthetic games with rule-questioner dialogues (see module doc); deterministic by `seed`."""
    if num_games < 1:
        raise ValueError(f"num_games must be >= 1, got {num_games}")
    if not 2 <= min_objects <= max_objects:
        raise ValueError(f"need 2 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if max_questions < 1:
        raise ValueError(f"max_questions must be >= 1, got {max_questions}")
    if not 0.0 <= colour_question_rate <= 1.0:
        raise ValueError(f"colour_question_rate must be in [0, 1], got {colour_question_rate}")
    rng = np.random.default_rng(seed)
    width, height = image_size
    spatial_kinds = ("left", "right", "top", "bottom")
    records = []
    for _ in range(num_games):
        n = int(rng.integers(min_objects, max_objects + 1))
        cats = rng.integers(1, len(CATEGORIES) + 1, size=n)
        colours = rng.integers(0, len(COLOURS), size=n)
        w = rng.uniform(0.08, 0.3, size=n) * width
        h = rng.uniform(0.08, 0.3, size=n) * height
        x = rng.uniform(0, 1, size=n) * (width - w)
        y = rng.uniform(0, 1, size=n) * (height - h)
        boxes = np.stack([x, y, w, h], axis=1)
        target = int(rng.integers(n))

        def answers_for(kind, value, objs):
            return [rule_answer(kind, value, int(cats[i]), int(colours[i]), boxes[i], image_size) for i in objs]

        candidates = list(range(n))
        questions, answers = [], []
        while len(candidates) > 1 and len(questions) < max_questions:
            pools = {"colour": [], "other": []}
            for kind, values in (("category", sorted({int(cats[i]) for i in candidates})),
                                 ("colour", sorted({int(colours[i]) for i in candidates})),
                                 *[(k, [None]) for k in spatial_kinds]):
                for v in values:
                    if len(set(answers_for(kind, v, candidates))) > 1:  # the question splits the candidates
                        pools["colour" if kind == "colour" else "other"].append((kind, v))
            if not pools["colour"] and not pools["other"]:
                break
            use_colour = pools["colour"] and (not pools["other"] or rng.uniform() < colour_question_rate)
            pool = pools["colour"] if use_colour else pools["other"]
            kind, value = pool[int(rng.integers(len(pool)))]
            answer = answers_for(kind, value, [target])[0]
            questions.append(question_text(kind, value))
            answers.append(answer)
            candidates = [i for i in candidates if answers_for(kind, value, [i])[0] == answer]
        records.append(dict(questions=questions, answers=answers, categories=cats.tolist(), boxes=boxes,
                            image_size=(width, height), target=target, colours=colours.tolist()))
    names = {i + 1: c for i, c in enumerate(CATEGORIES)}
    return _pad_games(records, names)


# ------------------------------------------------------------------------------- JSONL


def guesswhat_path(data_dir: str, split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    for name in (f"guesswhat.{split}.jsonl.gz", f"guesswhat.{split}.jsonl"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"no guesswhat.{split}.jsonl.gz (or .jsonl) in {data_dir!r}; download the GuessWhat?! data set "
        "(https://github.com/GuessWhatGame/guesswhat, data/guesswhat.*.jsonl.gz) into that folder"
    )


def load_guesswhat_jsonl(path: str, max_games: int | None = None, successful_only: bool = False,
                         max_questions: int | None = None) -> Games:
    """Games of one GuessWhat?! JSONL(.gz) file (see module doc).

    Args:
        path: `guesswhat.<split>.jsonl.gz` or an uncompressed `.jsonl`.
        max_games: keep at most this many games (file order).
        successful_only: keep games with `status == "success"` (the human guessed right).
        max_questions: keep at most the first `max_questions` question/answer pairs of a dialogue.
    """
    opener = gzip.open if path.endswith(".gz") else open
    records, names = [], {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                game = json.loads(line)
                objects = game["objects"]
                image = game["image"]
                ids = [o["id"] for o in objects]
                target = ids.index(game["object_id"])
                qas = game["qas"]
                width, height = float(image["width"]), float(image["height"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{line_no}: not a GuessWhat?! game ({e!r})") from None
            except ValueError:
                raise ValueError(f"{path}:{line_no}: object_id {game.get('object_id')!r} is not among the "
                                 "game's objects") from None
            if width <= 0 or height <= 0:
                raise ValueError(f"{path}:{line_no}: image width/height must be positive")
            if successful_only and game.get("status") != "success":
                continue
            if max_questions is not None:
                qas = qas[:max_questions]
            try:
                answers = [answer_index(qa["answer"]) for qa in qas]
            except ValueError as e:
                raise ValueError(f"{path}:{line_no}: {e}") from None
            for o in objects:
                cid = int(o["category_id"])
                if cid < 1:
                    raise ValueError(f"{path}:{line_no}: category_id must be >= 1, got {cid}")
                names.setdefault(cid, o.get("category", str(cid)))
            records.append(dict(
                questions=[qa["question"] for qa in qas], answers=answers,
                categories=[int(o["category_id"]) for o in objects],
                boxes=np.array([o["bbox"] for o in objects], dtype=np.float32).reshape(-1, 4),
                image_size=(width, height), target=target,
            ))
            if max_games is not None and len(records) >= max_games:
                break
    if not records:
        raise ValueError(f"{path}: no games" + (" with status 'success'" if successful_only else ""))
    return _pad_games(records, names)
