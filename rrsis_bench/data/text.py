"""Tokenization with word offsets, and decoupling of a referring expression.

FIANet-style methods see an expression three ways: the whole sentence (context text), the
**ground-object** phrase (the class phrase the sentence names) and the **spatial-position**
phrases ("on the left", "next to the storage tank"). Each is given to the model as a 0/1 mask over
the sentence's WordPieces. This module builds those masks for any Hugging Face tokenizer,
deterministically and without NLTK.

Words
    :func:`words_with_offsets` splits the text with a regex: runs of letters/digits, joined by
    inner apostrophes ("car's"), are words; every other non-space character is a word of its own.
    Matching is lower-cased; a possessive "'s" is ignored when matching ("car's" names a car).

Ground object
    The class phrases are the words expressions really use for each class ("storage tank",
    "road marking", ...: a dataset's ``class_phrases``, not its identifiers such as RRSIS-D's
    ``storagetank``). They are matched on whole words; the last word may carry a plural ("tanks",
    "buses", "factories"). So "tree" never matches "street", "bus" never "business", "car" never
    "scar". Two rules say what the object mask marks (``object_mask``):

    ``"clean"`` (default)
        ONE phrase, the referred object. At each word the longest class wins ("road marking" over
        "road"), and overlapping matches are resolved left to right. Among the matches, those
        outside every position phrase are preferred (in "next to the storage tank is a vehicle"
        the target is the vehicle); then ``object_priority="first"`` (default) takes the first one
        (the head of a referring expression usually comes first: "the vehicle next to the storage
        tank") and ``"longest"`` the one with the most words, ties to the first. No class phrase:
        the full attention mask (the object branch then sees the whole sentence).
    ``"official"``
        The semantics of the official FIANet loaders: EVERY class mentioned is marked (OR over the
        classes; each class phrase at its first occurrence; a phrase inside a longer marked one,
        such as "road" in "road marking", adds nothing), and an expression with no class phrase
        gets an all-zero mask, with which the ground-object branch (and so FIANet's whole OPAB
        output) is exactly 0 for that sample. The matching itself stays ours (whole words, character
        offsets): the official substring regexes ("tree" in "street", "bus" in "business") and its
        word-count shift are bugs, not semantics, and are not reproduced.

Spatial position (a rule-based chunker; the vocabulary is :data:`DEFAULT_SPATIAL_LEXICON`)
    ::

        PHRASE  := PREP NP OF*            (PREP from ``prepositions``, longest multi-word match first)
                 | WEAK NP OF*            (``weak_prepositions`` such as "to"/"from": kept only when
                                           the phrase holds a spatial word, as in "to the left of")
                 | SRUN OF*               (a spatial word outside a prepositional phrase: "leftmost",
                                           "top left", "left of the pool")
        OF      := "of" NP                (at most two; phrases with "of" are kept)
        NP      := DET* WORD* HEAD?       (at most ``max_np_words`` words after the determiners)
        HEAD    := a class phrase | SRUN (starting with a spatial noun) | a scene noun ("image")
        SRUN    := spatial words, consecutive or joined by "-" ("upper right corner", "top-left")

    An NP stops before punctuation, a stop word ("and", "which", "is", "parked", ...), "of", or
    the start of another preposition, and right after its head. Spatial adjectives ("upper",
    "northern", "leftmost") and unknown words are modifiers: the NP goes on through them.
    Words are compared whole, so "roof" and "off" are never "of".

Masks
    Word spans are mapped to tokens through character offsets: a token belongs to a phrase when its
    characters overlap the phrase's. A word that WordPiece splits into several pieces before the
    target does not shift the mask (a bug of the official code, which counted words). Fast
    tokenizers give offsets directly (``return_offsets_mapping``). A slow tokenizer is run piece by
    piece on the text split at spaces and punctuation, each piece's tokens taking the piece's
    characters: this is exact for BERT-style tokenizers (whose pre-tokenizer splits the same way)
    and an approximation for others (e.g. SentencePiece loses the spaces between pieces).

    The sequence is ``[CLS] tokens [SEP]`` (the tokenizer's own special tokens), right-padded with
    its pad id to ``max_tokens``. An overlong expression loses its last tokens but keeps the final
    [SEP] (the official code slices after adding [SEP] and loses it) and is flagged ``truncated``.
    Tokens past ``max_tokens`` simply drop out of the masks (never a longer mask). A phrase is
    reported (with its full text) while at least one of its tokens is left, and dropped otherwise.

Fallbacks
    No position phrase: the position mask is the full attention mask, as in the official code.
    No class phrase: see the two object-mask rules above (full mask, or official all-zero).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

__all__ = [
    "DEFAULT_SPATIAL_LEXICON",
    "Decoupling",
    "EncodedText",
    "ExpressionEncoder",
    "ExpressionParser",
    "OBJECT_MASK_RULES",
    "SpatialLexicon",
    "words_with_offsets",
]

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\S")
# Pieces for the slow-tokenizer fallback: the split a BERT pre-tokenizer makes (spaces and punctuation).
_PIECE_RE = re.compile(r"[^\W_]+|\S")
_POSSESSIVE = ("'s", "’s")

_EMPTY_TEXT = "A referring expression is empty or whitespace-only; every sample needs text."
#: What the ground-object mask marks (see the module docstring): one phrase with a full-mask
#: fallback, or the official OR over every class mentioned with an all-zero fallback.
OBJECT_MASK_RULES = ("clean", "official")


def words_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` for each word of ``text``: letters/digits (with inner apostrophes) or
    one punctuation character; ``text[start:end] == word`` (original case)."""
    return [(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


@dataclass(frozen=True)
class SpatialLexicon:
    """Vocabulary of the position chunker (see the module docstring for the grammar).

    Entries are lower-case; prepositions may have several words ("in front of").
    """

    prepositions: tuple[str, ...]
    weak_prepositions: tuple[str, ...]
    spatial_nouns: frozenset[str]
    spatial_adjectives: frozenset[str]
    scene_nouns: frozenset[str]
    determiners: frozenset[str]
    stop_words: frozenset[str]
    max_np_words: int = 5
    max_of_extensions: int = 2


DEFAULT_SPATIAL_LEXICON = SpatialLexicon(
    prepositions=(
        "in front of", "on top of", "in the vicinity of", "next to", "close to", "closer to",
        "closest to", "near to", "nearer to", "nearest to", "adjacent to", "parallel to",
        "perpendicular to", "opposite to", "far from", "away from", "far away from",
        "surrounded by", "in between",
        "on", "in", "at", "by", "near", "beside", "behind", "above", "below", "under", "over",
        "beneath", "underneath", "between", "among", "amongst", "around", "along", "alongside",
        "across", "inside", "outside", "within", "beyond", "opposite", "facing", "upon", "atop",
    ),
    weak_prepositions=("to", "from", "toward", "towards"),
    spatial_nouns=frozenset({
        "left", "right", "top", "bottom", "middle", "center", "centre", "side", "sides", "corner",
        "corners", "edge", "edges", "border", "front", "back", "rear", "north", "south", "east",
        "west", "northeast", "northwest", "southeast", "southwest",
    }),
    spatial_adjectives=frozenset({
        "upper", "lower", "central", "northern", "southern", "eastern", "western", "northeastern",
        "northwestern", "southeastern", "southwestern", "leftmost", "rightmost", "topmost",
        "uppermost", "bottommost", "lowermost", "lowest", "northernmost", "southernmost",
        "easternmost", "westernmost", "innermost", "outermost", "inner", "outer", "far",
        "farthest", "furthest", "nearest", "closest",
    }),
    scene_nouns=frozenset({"image", "picture", "photo", "photograph", "scene", "view", "map", "frame"}),
    determiners=frozenset({
        "the", "a", "an", "this", "that", "these", "those", "its", "their", "each", "every", "both",
        "all", "some", "any", "another",
    }),
    stop_words=frozenset({
        "and", "or", "but", "nor", "which", "that", "who", "whom", "whose", "where", "when", "while",
        "whereas", "with", "without", "for", "than", "like", "as", "is", "are", "was", "were", "be",
        "been", "being", "am", "has", "have", "had", "having", "does", "do", "did", "can", "could",
        "will", "would", "should", "may", "might", "it", "they", "there", "here", "located",
        "situated", "parked", "lying", "lies", "lie", "sits", "sitting", "stands", "standing",
        "placed", "positioned",
    }),
)


@dataclass(frozen=True)
class Decoupling:
    """Character spans ``(start, end)``: the ground-object phrase (the clean rule's pick), the
    position phrases, and every class phrase mentioned (the official rule's marks, in text order)."""

    object_span: tuple[int, int] | None
    position_spans: tuple[tuple[int, int], ...]
    class_spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class EncodedText:
    """One tokenized expression; every sequence has length ``max_tokens``.

    Sequences are tuples (the value is cached and shared); ``torch.tensor`` takes them as they are.
    """

    input_ids: tuple[int, ...]
    attention_mask: tuple[int, ...]
    object_mask: tuple[int, ...]
    position_mask: tuple[int, ...]
    object_phrases: tuple[str, ...]  # the phrases under the object mask, in text order
    position_phrases: tuple[str, ...]
    truncated: bool

    @property
    def object_phrase(self) -> str | None:
        """The first ground-object phrase (the only one under the clean rule), or None."""
        return self.object_phrases[0] if self.object_phrases else None


def _match_key(word: str) -> str:
    key = word.lower()
    for suffix in _POSSESSIVE:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def _core_end(word: str, end: int) -> int:
    """End of ``word`` without a possessive "'s" (the object mask covers "car" in "car's")."""
    for suffix in _POSSESSIVE:
        if word.lower().endswith(suffix) and len(word) > len(suffix):
            return end - len(suffix)
    return end


@cache
def _plural_forms(word: str) -> frozenset[str]:
    forms = {word, word + "s", word + "es"}
    if word.endswith("y") and len(word) > 1:
        forms.add(word[:-1] + "ies")
    return frozenset(forms)


class ExpressionParser:
    """Finds the ground-object and spatial-position phrases of an expression (character spans)."""

    def __init__(
        self,
        class_phrases: Sequence[str],
        *,
        spatial_lexicon: SpatialLexicon = DEFAULT_SPATIAL_LEXICON,
        object_priority: Literal["first", "longest"] = "first",
    ) -> None:
        if object_priority not in ("first", "longest"):
            raise ValueError(f"object_priority must be 'first' or 'longest' (got {object_priority!r}).")
        self.lexicon = spatial_lexicon
        self.object_priority = object_priority
        # class phrases → word tuples; "Expressway-Service-area" and "storage_tank" read as spaced words
        self._classes: dict[str, list[tuple[str, ...]]] = {}
        for name in class_phrases:
            words = tuple(w.lower() for w, _, _ in words_with_offsets(re.sub(r"[-_]", " ", name)))
            if not words or not all(w[0].isalnum() for w in words):
                raise ValueError(f"Class phrase {name!r} has no usable word; give plain phrases like 'storage tank'.")
            self._classes.setdefault(words[0], []).append(words)
        for entries in self._classes.values():
            entries.sort(key=len, reverse=True)
        self._preps = self._index(spatial_lexicon.prepositions)
        self._weak_preps = self._index(spatial_lexicon.weak_prepositions)
        self._spatial = spatial_lexicon.spatial_nouns | spatial_lexicon.spatial_adjectives

    @staticmethod
    def _index(phrases: Sequence[str]) -> dict[str, list[tuple[str, ...]]]:
        index: dict[str, list[tuple[str, ...]]] = {}
        for phrase in phrases:
            words = tuple(phrase.lower().split())
            index.setdefault(words[0], []).append(words)
        for entries in index.values():
            entries.sort(key=len, reverse=True)
        return index

    # --- matching helpers over the lower-cased word keys -------------------------------------
    def _class_matches(self, keys: list[str], i: int) -> list[tuple[tuple[str, ...], int]]:
        """(class phrase, end index) of every class phrase starting at word ``i``, longest first
        (plural allowed on the phrase's last word)."""
        matches = []
        for words in self._classes.get(keys[i], ()):  # longest first
            n = len(words)
            if i + n <= len(keys) and keys[i : i + n - 1] == list(words[:-1]) and keys[i + n - 1] in _plural_forms(words[-1]):
                matches.append((words, i + n))
        if not matches:  # a plural one-word phrase: "tanks" is not a key of the index, "tank" is
            key = keys[i]
            for stem in (key[:-1], key[:-2], key[:-3] + "y" if key.endswith("ies") else None):
                for words in self._classes.get(stem, ()) if stem else ():
                    if len(words) == 1 and key in _plural_forms(words[0]):
                        matches.append((words, i + 1))
        return matches

    def _class_end(self, keys: list[str], i: int) -> int | None:
        """End index of the longest class phrase starting at word ``i``."""
        matches = self._class_matches(keys, i)
        return matches[0][1] if matches else None

    @staticmethod
    def _prep_end(index: dict[str, list[tuple[str, ...]]], keys: list[str], i: int) -> int | None:
        for words in index.get(keys[i], ()):
            if tuple(keys[i : i + len(words)]) == words:
                return i + len(words)
        return None

    def _is_boundary(self, keys: list[str], i: int) -> bool:
        key = keys[i]
        return (
            not key[0].isalnum()
            or key == "of"
            or key in self.lexicon.stop_words
            or self._prep_end(self._preps, keys, i) is not None
            or self._prep_end(self._weak_preps, keys, i) is not None
        )

    def _spatial_run_end(self, keys: list[str], i: int) -> int:
        """End of a run of spatial words starting at ``i`` (joined directly or by "-")."""
        j = i + 1
        while j < len(keys):
            if keys[j] in self._spatial:
                j += 1
            elif keys[j] == "-" and j + 1 < len(keys) and keys[j + 1] in self._spatial:
                j += 2
            else:
                break
        return j

    def _noun_phrase_end(self, keys: list[str], i: int) -> int | None:
        lex = self.lexicon
        j = i
        while j < len(keys) and keys[j] in lex.determiners:
            j += 1
        first, count = j, 0
        while j < len(keys) and count < lex.max_np_words and not self._is_boundary(keys, j):
            class_end = self._class_end(keys, j)
            if class_end is not None:
                return class_end
            if keys[j] in lex.spatial_nouns:
                return self._spatial_run_end(keys, j)
            if keys[j] in lex.scene_nouns:
                return j + 1
            j += 1
            count += 1
        return j if j > first else None

    def _extend_of(self, keys: list[str], end: int) -> int:
        for _ in range(self.lexicon.max_of_extensions):
            if end >= len(keys) or keys[end] != "of":
                break
            np_end = self._noun_phrase_end(keys, end + 1)
            if np_end is None:
                break
            end = np_end
        return end

    # --- the two phrase finders ------------------------------------------------------------
    def _position_ranges(self, keys: list[str]) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        i = 0
        while i < len(keys):
            strong = self._prep_end(self._preps, keys, i)
            weak = None if strong is not None else self._prep_end(self._weak_preps, keys, i)
            if strong is not None or weak is not None:
                np_end = self._noun_phrase_end(keys, strong if strong is not None else weak)
                if np_end is not None:
                    end = self._extend_of(keys, np_end)
                    if strong is not None or any(k in self._spatial for k in keys[weak:end]):
                        ranges.append((i, end))
                        i = end
                        continue
                i += 1
            elif keys[i] in self._spatial:
                end = self._extend_of(keys, self._spatial_run_end(keys, i))
                ranges.append((i, end))
                i = end
            else:
                i += 1
        return ranges

    def _object_range(self, keys: list[str], positions: list[tuple[int, int]]) -> tuple[int, int] | None:
        matches: list[tuple[int, int]] = []
        i = 0
        while i < len(keys):
            end = self._class_end(keys, i) if keys[i][0].isalnum() else None
            if end is None:
                i += 1
            else:
                matches.append((i, end))
                i = end
        if not matches:
            return None
        outside = [m for m in matches if not any(m[0] < pe and ps < m[1] for ps, pe in positions)]
        pool = outside or matches
        if self.object_priority == "longest":
            return max(pool, key=lambda m: m[1] - m[0])  # max keeps the first of equals
        return pool[0]

    def _mentioned_ranges(self, keys: list[str]) -> list[tuple[int, int]]:
        """Word ranges of every class phrase at its first occurrence, in text order; a range inside
        another one ("road" in "road marking", "tank" in "storage tank") is dropped."""
        first: dict[tuple[str, ...], tuple[int, int]] = {}
        for i, key in enumerate(keys):
            if key[0].isalnum():
                for words, end in self._class_matches(keys, i):
                    first.setdefault(words, (i, end))
        ranges = sorted(set(first.values()))
        return [r for r in ranges if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in ranges)]

    def parse(self, text: str) -> Decoupling:
        """Character spans of the object phrase and the position phrases of ``text``."""
        words = words_with_offsets(text)
        keys = [_match_key(w) for w, _, _ in words]
        positions = self._position_ranges(keys)
        obj = self._object_range(keys, positions)

        def char_span(word_range: tuple[int, int]) -> tuple[int, int]:
            last_word, _, last_end = words[word_range[1] - 1]
            return words[word_range[0]][1], _core_end(last_word, last_end)

        return Decoupling(
            object_span=None if obj is None else char_span(obj),
            position_spans=tuple((words[a][1], words[b - 1][2]) for a, b in positions),
            class_spans=tuple(char_span(r) for r in self._mentioned_ranges(keys)),
        )


class ExpressionEncoder:
    """Tokenize an expression to ``max_tokens`` and build its object and position token masks.

    ``max_tokens`` counts the special tokens ([CLS] and [SEP]). ``class_phrases`` are the words
    expressions use for the classes; ``object_mask`` is the rule for the ground-object mask
    (``"clean"`` or ``"official"``). Results are memoized per text. See the module docstring for
    the rules, the slow-tokenizer fallback and the fallbacks.
    """

    def __init__(
        self,
        tokenizer,
        max_tokens: int,
        class_phrases: Sequence[str],
        *,
        spatial_lexicon: SpatialLexicon = DEFAULT_SPATIAL_LEXICON,
        object_mask: Literal["clean", "official"] = "clean",
        object_priority: Literal["first", "longest"] = "first",
    ) -> None:
        if object_mask not in OBJECT_MASK_RULES:
            raise ValueError(
                f"object_mask must be one of {', '.join(map(repr, OBJECT_MASK_RULES))} (got {object_mask!r}): "
                "set data.object_mask=clean or data.object_mask=official."
            )
        if tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token before building the encoder.")
        n_special = tokenizer.num_special_tokens_to_add()
        if max_tokens < n_special + 1:
            raise ValueError(f"max_tokens must be at least {n_special + 1} (got {max_tokens}): it counts the special tokens.")
        self.tokenizer = tokenizer
        self.max_tokens = int(max_tokens)
        self.object_mask_rule = object_mask
        self.parser = ExpressionParser(class_phrases, spatial_lexicon=spatial_lexicon, object_priority=object_priority)
        self.is_fast = bool(getattr(tokenizer, "is_fast", False))
        self._cache: dict[str, EncodedText] = {}

    def _tokens(self, text: str) -> tuple[list[int], list[int], list[tuple[int, int]], list[int]]:
        """(leading special ids, content ids, content character offsets, trailing special ids)."""
        if self.is_fast:
            enc = self.tokenizer(
                text, add_special_tokens=True, truncation=False, return_offsets_mapping=True,
                return_special_tokens_mask=True, return_attention_mask=False,
            )
            ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
        else:
            content, offsets = [], []
            for piece in _PIECE_RE.finditer(text):
                piece_ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(piece.group()))
                content += piece_ids
                offsets += [(piece.start(), piece.end())] * len(piece_ids)
            ids = self.tokenizer.build_inputs_with_special_tokens(content)
            special = self.tokenizer.get_special_tokens_mask(content)
            lead = special.index(0) if 0 in special else len(special)
            offsets = [(0, 0)] * lead + offsets + [(0, 0)] * (len(ids) - lead - len(content))
        content_at = [k for k, s in enumerate(special) if not s]
        if not content_at:
            raise ValueError(f"The expression {text!r} gives no tokens; check the text and the tokenizer.")
        a, b = content_at[0], content_at[-1] + 1
        return list(ids[:a]), list(ids[a:b]), [tuple(o) for o in offsets[a:b]], list(ids[b:])

    def __call__(self, text: str) -> EncodedText:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        if not text or not text.strip():
            raise ValueError(_EMPTY_TEXT)
        lead, content, offsets, trail = self._tokens(text)
        budget = self.max_tokens - len(lead) - len(trail)
        truncated = len(content) > budget
        content, offsets = content[:budget], offsets[:budget]
        n_real = len(lead) + len(content) + len(trail)
        pad = self.max_tokens - n_real
        input_ids = tuple(lead + content + trail + [self.tokenizer.pad_token_id] * pad)
        attention = tuple([1] * n_real + [0] * pad)

        def token_mask(span: tuple[int, int]) -> list[int]:
            return [int(s < span[1] and e > span[0] and e > s) for s, e in offsets]

        def full_length(content_mask: list[int]) -> tuple[int, ...]:
            return tuple([0] * len(lead) + content_mask + [0] * (len(trail) + pad))

        spans = self.parser.parse(text)
        if self.object_mask_rule == "official":
            object_spans = spans.class_spans
        else:
            object_spans = () if spans.object_span is None else (spans.object_span,)
        object_phrases, marked = [], [0] * len(content)
        for span in object_spans:
            marks = token_mask(span)
            if any(marks):  # a phrase truncated away is not reported
                object_phrases.append(text[slice(*span)])
                marked = [m | n for m, n in zip(marked, marks, strict=True)]
        if object_phrases:
            object_mask = full_length(marked)
        else:
            object_mask = attention if self.object_mask_rule == "clean" else (0,) * self.max_tokens

        phrases, position = [], [0] * len(content)
        for span in spans.position_spans:
            marks = token_mask(span)
            if any(marks):
                phrases.append(text[slice(*span)])
                position = [p | m for p, m in zip(position, marks, strict=True)]
        position_mask = full_length(position) if phrases else attention

        encoded = EncodedText(
            input_ids=input_ids,
            attention_mask=attention,
            object_mask=object_mask,
            position_mask=position_mask,
            object_phrases=tuple(object_phrases),
            position_phrases=tuple(phrases),
            truncated=truncated,
        )
        self._cache[text] = encoded
        return encoded
