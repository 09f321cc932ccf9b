"""Tokenization with word offsets and expression decoupling (rrsis_bench.data.text)."""

from __future__ import annotations

import dataclasses

import pytest

from rrsis_bench.data.text import (
    DEFAULT_SPATIAL_LEXICON,
    ExpressionEncoder,
    ExpressionParser,
    words_with_offsets,
)
from rrsis_bench.nn.text import build_tokenizer, resolve_text_model

RRSISD_CLASSES = [
    "airplane", "airport", "golf field", "expressway service area", "baseball field", "stadium",
    "ground track field", "storage tank", "basketball court", "chimney", "tennis court", "overpass",
    "train station", "ship", "expressway toll station", "dam", "harbor", "bridge", "vehicle", "windmill",
]
REFSEGRS_CLASSES = [
    "road", "vehicle", "car", "van", "building", "truck", "trailer", "bus", "road marking", "bikeway",
    "sidewalk", "tree", "low vegetation", "impervious surface",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("minilm")


@pytest.fixture(scope="module")
def rrsisd(tokenizer):
    return ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES)


@pytest.fixture(scope="module")
def refsegrs(tokenizer):
    return ExpressionEncoder(tokenizer, 20, REFSEGRS_CLASSES)


def masked_text(tokenizer, enc, mask) -> str:
    """The WordPieces under ``mask`` joined back into text."""
    ids = [i for i, m in zip(enc.input_ids, mask, strict=True) if m]
    return tokenizer.decode(ids)


def check_shape(enc, max_tokens, sep_id=102, cls_id=101, pad_id=0):
    for seq in (enc.input_ids, enc.attention_mask, enc.object_mask, enc.position_mask):
        assert len(seq) == max_tokens
    n = sum(enc.attention_mask)
    assert enc.attention_mask == (1,) * n + (0,) * (max_tokens - n)  # exactly [CLS]..[SEP]
    assert enc.input_ids[0] == cls_id and enc.input_ids[n - 1] == sep_id
    assert all(i == pad_id for i in enc.input_ids[n:])
    assert enc.input_ids.count(sep_id) == 1
    for mask in (enc.object_mask, enc.position_mask):
        assert set(mask) <= {0, 1}
        assert all(m <= a for m, a in zip(mask, enc.attention_mask, strict=True))


def test_words_with_offsets():
    text = "The car's roof, top-left (2 trucks)."
    words = words_with_offsets(text)
    assert [w for w, _, _ in words] == ["The", "car's", "roof", ",", "top", "-", "left", "(", "2", "trucks", ")", "."]
    assert all(text[s:e] == w for w, s, e in words)


def test_split_word_before_target_does_not_shift_masks(tokenizer, rrsisd):
    text = "the photovoltaic array next to the storage tank"
    assert len(tokenizer.tokenize("photovoltaic")) > 1  # the premise: a split word before the target
    enc = rrsisd(text)
    check_shape(enc, 22)
    assert enc.object_phrase == "storage tank"
    assert masked_text(tokenizer, enc, enc.object_mask) == "storage tank"
    assert enc.position_phrases == ("next to the storage tank",)
    assert masked_text(tokenizer, enc, enc.position_mask) == "next to the storage tank"
    # storage/tank are the last two pieces before [SEP]
    n = sum(enc.attention_mask)
    assert [k for k, m in enumerate(enc.object_mask) if m] == [n - 3, n - 2]


def test_split_spatial_adjective_is_marked_whole(tokenizer, rrsisd):
    enc = rrsisd("the leftmost tennis courts")
    assert enc.position_phrases == ("leftmost",)
    assert tokenizer.convert_ids_to_tokens([i for i, m in zip(enc.input_ids, enc.position_mask, strict=True) if m]) == ["left", "##most"]
    assert enc.object_phrase == "tennis courts"
    assert masked_text(tokenizer, enc, enc.object_mask) == "tennis courts"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the car on the street", "car"),  # "tree" is not in "street"
        ("the bus near the business district", "bus"),
        ("the business district near the buses", "buses"),  # not "bus" inside "business"
        ("a scar next to the van", "van"),  # "car" is not in "scar"
        ("the advantage of the trucks", "trucks"),  # "van" is not in "advantage"
        ("the road marking next to the trees", "road marking"),  # longest class at a word
        ("the road next to the road marking", "road"),  # first occurrence
        ("the car's roof", "car"),  # possessive: only "car"
        ("low vegetation between buildings", "low vegetation"),
    ],
)
def test_class_words_match_whole_words(tokenizer, refsegrs, text, expected):
    enc = refsegrs(text)
    assert enc.object_phrase == expected
    assert masked_text(tokenizer, enc, enc.object_mask) == expected


def test_class_words_inside_other_words_never_match(refsegrs):
    enc = refsegrs("a scar in the street of the business advantage")
    assert enc.object_phrase is None
    assert enc.object_mask == enc.attention_mask  # "full" fallback


def test_multi_word_classes_and_plurals(tokenizer, rrsisd):
    enc = rrsisd("two storage tanks beside the ground track fields")
    assert enc.object_phrase == "storage tanks"
    assert enc.position_phrases == ("beside the ground track fields",)
    assert rrsisd("the expressway service area").object_phrase == "expressway service area"
    assert rrsisd("the harbors").object_phrase == "harbors"


def test_object_outside_position_phrases_is_preferred(rrsisd):
    enc = rrsisd("next to the storage tank is a vehicle")
    assert enc.object_phrase == "vehicle"
    assert enc.position_phrases == ("next to the storage tank",)


def test_object_priority_longest(tokenizer):
    text = "the vehicle and the storage tank"
    assert ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES)(text).object_phrase == "vehicle"
    longest = ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES, object_priority="longest")
    assert longest(text).object_phrase == "storage tank"


@pytest.mark.parametrize(
    "text, phrases",
    [
        ("the vehicle left of the pool", ("left of the pool",)),
        ("the ship in the middle of the image", ("in the middle of the image",)),
        ("a storage tank in the upper right corner of the image", ("in the upper right corner of the image",)),
        ("the ship to the left of the harbor", ("to the left of the harbor",)),
        ("the chimney on the roof of the factory", ("on the roof of the factory",)),  # "roof" is not "of"
        ("the vehicle that drove off near the bridge", ("near the bridge",)),  # "off" is not "of"
        ("the airplane at the bottom", ("at the bottom",)),
        ("the third ship from the left", ("from the left",)),
        ("the top-left windmill", ("top-left",)),
        ("the northern dam", ("northern",)),
        ("the ship in front of the bridge", ("in front of the bridge",)),
        (
            "the vehicle parked near the expressway toll station on the right",
            ("near the expressway toll station", "on the right"),
        ),
    ],
)
def test_position_phrases(tokenizer, rrsisd, text, phrases):
    enc = rrsisd(text)
    check_shape(enc, 22)
    assert enc.position_phrases == phrases
    assert masked_text(tokenizer, enc, enc.position_mask) == " ".join(phrases).replace("top-left", "top - left")


def test_weak_preposition_needs_a_spatial_word(rrsisd):
    assert rrsisd("the road to the airport").position_phrases == ()


def test_no_position_phrase_falls_back_to_full_mask(rrsisd):
    enc = rrsisd("a large gray airplane")
    assert enc.position_phrases == ()
    assert enc.position_mask == enc.attention_mask


def test_no_class_word_object_fallback(tokenizer):
    full = ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES)("the large building on the left")
    zeros = ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES, object_mask="official")("the large building on the left")
    assert full.object_phrase is None and zeros.object_phrase is None
    assert full.object_mask == full.attention_mask
    assert zeros.object_mask == (0,) * 22
    assert full.position_phrases == zeros.position_phrases == ("on the left",)
    with pytest.raises(ValueError, match="data.object_mask=clean"):
        ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES, object_mask="zeros")


@pytest.fixture(scope="module")
def official(tokenizer):
    return ExpressionEncoder(tokenizer, 20, REFSEGRS_CLASSES, object_mask="official")


@pytest.mark.parametrize(
    "text, clean, marked",
    [
        # every class named is marked (OR), each at its first occurrence
        ("the vehicle next to the building", ("vehicle",), ("vehicle", "building")),
        ("next to the building is a vehicle", ("vehicle",), ("building", "vehicle")),
        ("the car behind the car near the tree", ("car",), ("car", "tree")),
        # a class at its first occurrence inside a longer one adds nothing (the official loader, too,
        # marks "road" where "road marking" starts); its substring bugs are not reproduced
        ("road marking on the road", ("road marking",), ("road marking",)),
        ("the road next to the road marking", ("road",), ("road", "road marking")),
        ("the road marking", ("road marking",), ("road marking",)),
        ("the bus on the street near the business", ("bus",), ("bus",)),
        ("low vegetation", ("low vegetation",), ("low vegetation",)),
    ],
)
def test_official_rule_marks_every_class_named(tokenizer, refsegrs, official, text, clean, marked):
    clean_enc, official_enc = refsegrs(text), official(text)
    assert clean_enc.object_phrases == clean
    assert official_enc.object_phrases == marked
    assert masked_text(tokenizer, official_enc, official_enc.object_mask) == " ".join(marked)
    # Only the object mask differs between the rules.
    assert official_enc.input_ids == clean_enc.input_ids and official_enc.position_mask == clean_enc.position_mask


def test_official_rule_all_zero_without_a_class_and_truncated_classes_drop(tokenizer, official):
    enc = official("a scar in the street of the business advantage")
    assert enc.object_phrases == () and enc.object_mask == (0,) * 20
    short = ExpressionEncoder(tokenizer, 6, REFSEGRS_CLASSES, object_mask="official")
    enc = short("the car near a long long way to the tree")  # the tree is cut off
    assert enc.truncated and enc.object_phrases == ("car",)
    assert masked_text(tokenizer, enc, enc.object_mask) == "car"


def test_overlong_expression_keeps_sep(tokenizer):
    encoder = ExpressionEncoder(tokenizer, 10, RRSISD_CLASSES)
    text = "the small white vehicle parked in the middle of the image next to the storage tank"
    enc = encoder(text)
    assert enc.truncated
    check_shape(enc, 10)
    assert sum(enc.attention_mask) == 10 and enc.input_ids[-1] == 102
    assert enc.object_phrase == "vehicle"
    # 8 content pieces: "in the middle of the image" is cut after "middle"; the tank is gone entirely
    assert enc.position_phrases == ("in the middle of the image",)
    assert masked_text(tokenizer, enc, enc.position_mask) == "in the middle"
    assert not encoder("the vehicle").truncated


def test_truncated_object_is_dropped(tokenizer):
    enc = ExpressionEncoder(tokenizer, 6, RRSISD_CLASSES)("a very very long way to the storage tank")
    assert enc.truncated and enc.object_phrase is None
    assert enc.object_mask == enc.attention_mask


def test_input_ids_match_the_tokenizers_own_encoding(tokenizer):
    """Ids and attention mask equal the tokenizer's padded/truncated encoding (which keeps [SEP])."""
    encoder = ExpressionEncoder(tokenizer, 12, RRSISD_CLASSES)
    for text in ["the ship", "  the ship on the left  ", "the small white vehicle parked in the middle of the image"]:
        ref = tokenizer(text.strip(), padding="max_length", truncation=True, max_length=12)
        enc = encoder(text)
        assert list(enc.input_ids) == ref["input_ids"] and list(enc.attention_mask) == ref["attention_mask"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_an_error(rrsisd, text):
    with pytest.raises(ValueError, match="empty"):
        rrsisd(text)


def test_results_are_cached_and_deterministic(tokenizer, rrsisd):
    text = "the ship in the middle of the harbor"
    assert rrsisd(text) is rrsisd(text)
    assert ExpressionEncoder(tokenizer, 22, RRSISD_CLASSES)(text) == rrsisd(text)


def test_parser_spans_and_custom_lexicon():
    text = "the bridge over the river"
    parser = ExpressionParser(RRSISD_CLASSES)
    spans = parser.parse(text)
    assert text[slice(*spans.object_span)] == "bridge"
    assert [text[slice(*s)] for s in spans.position_spans] == ["over the river"]
    no_over = dataclasses.replace(
        DEFAULT_SPATIAL_LEXICON, prepositions=tuple(p for p in DEFAULT_SPATIAL_LEXICON.prepositions if p != "over")
    )
    assert ExpressionParser(RRSISD_CLASSES, spatial_lexicon=no_over).parse(text).position_spans == ()
    # dataset-style class names with hyphens read as spaced words
    assert ExpressionParser(["Expressway-Service-area"]).parse("an expressway service area").object_span == (3, 26)


SENTENCES = [
    "the photovoltaic array next to the storage tank",
    "The chimney on the roof of the factory, left of the pool",
    "a storage tank in the upper right corner of the image",
    "the car's roof near the top-left building",
    "two storage tanks beside the ground track fields",
    "a large gray airplane",
    "the small white vehicle parked in the middle of the image next to the storage tank",
]


def test_slow_tokenizer_gives_the_same_result(tokenizer):
    transformers = pytest.importorskip("transformers")
    slow_cls = getattr(transformers.models.bert, "BertTokenizerLegacy", None)
    if slow_cls is None:  # transformers < 5: BertTokenizer is the slow one
        slow_cls = transformers.BertTokenizer
    slow = slow_cls.from_pretrained(resolve_text_model("minilm"))
    if getattr(slow, "is_fast", False):
        pytest.skip("no slow BERT tokenizer in this transformers version")
    fast_enc = ExpressionEncoder(tokenizer, 16, RRSISD_CLASSES + ["building"])
    slow_enc = ExpressionEncoder(slow, 16, RRSISD_CLASSES + ["building"])
    assert not slow_enc.is_fast and fast_enc.is_fast
    for text in SENTENCES:
        assert slow_enc(text) == fast_enc(text), text
