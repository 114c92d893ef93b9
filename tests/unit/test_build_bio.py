from __future__ import annotations

from build_engines.bio import IGNORE, Span, bio_to_spans, spans_to_bio, trim_span
from build_engines.data.labels import bio_tags

TAGS = bio_tags()
TAG_IDS = {t: i for i, t in enumerate(TAGS)}


def _names(ids: list[int]) -> list[str]:
    return ["IGN" if i == IGNORE else TAGS[i] for i in ids]


def test_spans_to_bio_marks_first_piece_b_and_rest_i() -> None:
    # "[CLS] call john smith at 555 - 1234 [SEP]"
    text = "call john smith at 555-1234"
    offsets = [(0, 0), (0, 4), (5, 9), (10, 15), (16, 18), (19, 22), (22, 23), (23, 27), (0, 0)]
    spans = [Span(5, 15, "PERSON"), Span(19, 27, "PHONE_NUMBER")]
    assert text[5:15] == "john smith"
    tags = _names(spans_to_bio(offsets, spans, TAG_IDS))
    assert tags == [
        "IGN",
        "O",
        "B-PERSON",
        "I-PERSON",
        "O",
        "B-PHONE_NUMBER",
        "I-PHONE_NUMBER",
        "I-PHONE_NUMBER",
        "IGN",
    ]


def test_adjacent_entities_of_one_type_stay_separate() -> None:
    offsets = [(0, 4), (5, 8)]
    spans = [Span(0, 4, "GPE"), Span(5, 8, "GPE")]
    assert _names(spans_to_bio(offsets, spans, TAG_IDS)) == ["B-GPE", "B-GPE"]
    assert bio_to_spans(offsets, ["B-GPE", "B-GPE"]) == spans


def test_round_trip_rebuilds_character_spans() -> None:
    offsets = [(0, 0), (0, 2), (3, 7), (8, 12), (12, 13), (14, 17), (0, 0)]
    spans = [Span(3, 13, "EMAIL_ADDRESS")]
    tags = _names(spans_to_bio(offsets, spans, TAG_IDS))
    assert bio_to_spans(offsets, ["O" if t == "IGN" else t for t in tags]) == spans


def test_i_tags_continue_an_entity_whose_type_is_the_majority() -> None:
    offsets = [(0, 3), (4, 7), (8, 11), (12, 15)]
    assert bio_to_spans(offsets, ["I-PERSON", "I-GPE", "I-PERSON", "O"]) == [Span(0, 11, "PERSON")]
    assert bio_to_spans(offsets, ["B-ORGANIZATION", "I-ORGANIZATION", "B-GPE", "O"]) == [
        Span(0, 7, "ORGANIZATION"),
        Span(8, 11, "GPE"),
    ]


def test_trim_span_drops_punctuation_and_spaces() -> None:
    text = 'call "Bob Lee", ok'
    assert trim_span(text, Span(5, 15, "PERSON")) == Span(6, 13, "PERSON")


def test_word_pieces_follow_the_first_piece_of_their_word() -> None:
    text = "Ask Klein-Gibson about Arquimedes"
    # Ask | Klein | - | Gibson | about | Ar | ##qui | ##medes
    offsets = [(0, 3), (4, 9), (9, 10), (10, 16), (17, 22), (23, 25), (25, 28), (28, 33)]
    tags = ["O", "B-ORGANIZATION", "I-ORGANIZATION", "I-ORGANIZATION", "O", "B-PERSON", "B-GPE", "O"]
    assert bio_to_spans(offsets, tags, text) == [Span(4, 16, "ORGANIZATION"), Span(23, 33, "PERSON")]
    # a word that starts outside an entity stays outside, whatever its later pieces say
    assert bio_to_spans([(0, 2), (2, 5)], ["O", "B-PERSON"], "Arqui") == []


def test_merge_adjacent_joins_space_separated_parts_of_one_address_only() -> None:
    from build_engines.bio import merge_adjacent

    text = "at 3090 Schönhauser Allee 60\nBerlin Mitte"
    spans = [Span(3, 7, "STREET_ADDRESS"), Span(8, 28, "STREET_ADDRESS"), Span(29, 35, "GPE"), Span(36, 41, "GPE")]
    merged = merge_adjacent(text, spans, frozenset({"STREET_ADDRESS"}))
    assert merged == [Span(3, 28, "STREET_ADDRESS"), Span(29, 35, "GPE"), Span(36, 41, "GPE")]


def test_trim_span_drops_edge_hyphens_and_leading_slashes_but_keeps_a_url_slash() -> None:
    text = "07633 74 03 82-Office, 9241798036-Fax, -Zombie Bodnár, see //www.example.com/"
    assert trim_span(text, Span(23, 34, "PHONE_NUMBER")) == Span(23, 33, "PHONE_NUMBER")
    assert trim_span(text, Span(38, 53, "PERSON")) == Span(40, 53, "PERSON")
    assert trim_span(text, Span(59, 77, "DOMAIN_NAME")) == Span(61, 77, "DOMAIN_NAME")
    # phone numbers keep their leading plus; inner hyphens stay
    assert trim_span("+1-202-555-0143", Span(0, 15, "PHONE_NUMBER")) == Span(0, 15, "PHONE_NUMBER")


def test_in_word_punctuation_tagged_o_does_not_cut_an_entity() -> None:
    text = "ping 192.168.1.20 now"
    offsets = [(0, 4), (5, 8), (8, 9), (9, 12), (12, 13), (13, 14), (14, 15), (15, 17), (18, 21)]
    tags = [
        "O",
        "B-IP_ADDRESS",
        "O",
        "B-IP_ADDRESS",
        "I-IP_ADDRESS",
        "I-IP_ADDRESS",
        "I-IP_ADDRESS",
        "I-IP_ADDRESS",
        "O",
    ]
    assert bio_to_spans(offsets, tags, text) == [Span(5, 17, "IP_ADDRESS")]
    # a space between two same-type entities keeps them apart
    assert len(bio_to_spans([(0, 3), (4, 7)], ["B-PERSON", "B-PERSON"], "Ann Bob")) == 2
