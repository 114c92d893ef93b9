from __future__ import annotations

from build_engines.data.labels import bio_tags
from wire.bio import IGNORE, Span, bio_to_spans, spans_to_bio, trim_span

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
    from wire.bio import merge_adjacent

    text = "at 3090 Schönhauser Allee 60\nBerlin Mitte"
    spans = [Span(3, 7, "STREET_ADDRESS"), Span(8, 28, "STREET_ADDRESS"), Span(29, 35, "GPE"), Span(36, 41, "GPE")]
    merged = merge_adjacent(text, spans, frozenset({"STREET_ADDRESS"}))
    assert merged == [Span(3, 28, "STREET_ADDRESS"), Span(29, 35, "GPE"), Span(36, 41, "GPE")]


def test_a_place_or_company_read_as_two_names_side_by_side_is_one_entity() -> None:
    text = "grew up in Quinta do Paço, worked at Acme Widgets\nParis Lyon"
    # Quinta | do | Paço | , | worked | at | Acme | Widgets | Paris | Lyon
    offsets = [(11, 17), (18, 20), (21, 25), (25, 26), (27, 33), (34, 36), (37, 41), (42, 49), (50, 55), (56, 60)]
    tags = ["B-GPE", "I-GPE", "B-GPE", "O", "O", "O", "B-ORGANIZATION", "B-ORGANIZATION", "B-GPE", "B-PERSON"]
    assert bio_to_spans(offsets, tags, text) == [
        Span(11, 25, "GPE"),
        Span(37, 49, "ORGANIZATION"),
        Span(50, 55, "GPE"),
        Span(56, 60, "PERSON"),
    ]
    # a line break or a comma still separates two places; two people side by side stay two people
    assert bio_to_spans([(0, 5), (6, 10)], ["B-GPE", "B-GPE"], "Paris\nLyon") == [Span(0, 5, "GPE"), Span(6, 10, "GPE")]
    assert bio_to_spans([(0, 3), (4, 7)], ["B-PERSON", "B-PERSON"], "Ann Bob") == [
        Span(0, 3, "PERSON"),
        Span(4, 7, "PERSON"),
    ]


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


def _words(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated words as token offsets, each punctuation mark its own token."""
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]


def test_punctuation_never_opens_an_entity_nor_votes_on_its_type() -> None:
    text = "join accounts with ms. Matheus"
    offsets = _words(text)  # join accounts with ms . Matheus
    tags = ["O", "O", "O", "O", "I-DOMAIN_NAME", "I-PERSON"]
    assert bio_to_spans(offsets, tags, text) == [Span(23, 30, "PERSON")]
    # inside an entity, punctuation still continues it and votes
    text = "see butler.biz"
    tags = ["O", "B-ORGANIZATION", "I-DOMAIN_NAME", "I-DOMAIN_NAME"]
    assert bio_to_spans(_words(text), tags, text) == [Span(4, 14, "DOMAIN_NAME")]


def test_spans_without_letters_or_digits_are_dropped() -> None:
    text = "my card # 4111 1111 1111 1111"
    tags = ["O", "O", "B-CREDIT_CARD", "B-CREDIT_CARD", "I-CREDIT_CARD", "I-CREDIT_CARD", "I-CREDIT_CARD"]
    assert bio_to_spans(_words(text), tags, text) == [Span(10, 29, "CREDIT_CARD")]


def test_titles_are_not_part_of_a_person() -> None:
    text = "Mr. Barnes is 50"
    assert trim_span(text, Span(0, 10, "PERSON")) == Span(4, 10, "PERSON")
    assert trim_span("ms. Nicolas", Span(0, 11, "PERSON")) == Span(4, 11, "PERSON")
    assert trim_span("Prof. Dr. Ute Kranz", Span(0, 19, "PERSON")) == Span(10, 19, "PERSON")
    # only the PERSON type, only whole titles, and a bare title keeps its span
    assert trim_span("Dr. Oetker", Span(0, 10, "ORGANIZATION")) == Span(0, 10, "ORGANIZATION")
    assert trim_span("Drake Bell", Span(0, 10, "PERSON")) == Span(0, 10, "PERSON")
    assert trim_span("Mr", Span(0, 2, "PERSON")) == Span(0, 2, "PERSON")
    # a PERSON span that is only a title is not an entity
    tags = ["B-PERSON", "I-PERSON", "B-PERSON", "O", "B-AGE"]
    assert bio_to_spans(_words(text), tags, text) == [Span(4, 10, "PERSON"), Span(14, 16, "AGE")]


def test_names_do_not_start_or_end_with_a_function_word() -> None:
    text = "studying at the University of Gochsheim under Ann"
    offsets = _words(text)  # studying at the University of Gochsheim under Ann
    tags = ["O", "O", "O", "O", "I-GPE", "I-GPE", "B-PERSON", "I-PERSON"]
    assert bio_to_spans(offsets, tags, text) == [Span(30, 39, "GPE"), Span(46, 49, "PERSON")]
    # a name of function words only is no name
    text = "studying at the University of Oslo"
    tags = ["O", "O", "O", "O", "B-ORGANIZATION", "O"]
    assert bio_to_spans(_words(text), tags, text) == []
    # inside a name they stay
    text = "Bank of America"
    assert bio_to_spans(_words(text), ["B-ORGANIZATION", "I-ORGANIZATION", "I-ORGANIZATION"], text) == [
        Span(0, 15, "ORGANIZATION")
    ]


def test_number_like_entities_do_not_start_or_end_with_a_word_without_digits() -> None:
    text = "shipped to zip 25220 under Ann"
    tags = ["O", "O", "B-ZIP_CODE", "I-ZIP_CODE", "I-ZIP_CODE", "B-PERSON"]
    assert bio_to_spans(_words(text), tags, text) == [Span(15, 20, "ZIP_CODE"), Span(27, 30, "PERSON")]
    text = "a text from 029 2018 0022 claiming"
    tags = ["O", "O", "O", "B-PHONE_NUMBER", "I-PHONE_NUMBER", "I-PHONE_NUMBER", "I-PHONE_NUMBER"]
    assert bio_to_spans(_words(text), tags, text) == [Span(12, 25, "PHONE_NUMBER")]
    # letters inside the value stay: extensions, postcodes
    text = "call 555 0142 ext 12"
    tags = ["O", "B-PHONE_NUMBER", "I-PHONE_NUMBER", "I-PHONE_NUMBER", "I-PHONE_NUMBER"]
    assert bio_to_spans(_words(text), tags, text) == [Span(5, 20, "PHONE_NUMBER")]


def test_space_separated_address_parts_are_one_address_as_in_the_gold() -> None:
    text = "return to Bertram and 477 South St today"
    tags = ["O", "O", "B-STREET_ADDRESS", "I-STREET_ADDRESS", "B-STREET_ADDRESS", "I-STREET_ADDRESS"]
    tags += ["I-STREET_ADDRESS", "O"]
    assert bio_to_spans(_words(text), tags, text) == [Span(10, 34, "STREET_ADDRESS")]
    # people and the number-like types keep adjacent entities apart
    assert len(bio_to_spans([(0, 3), (4, 7)], ["B-PERSON", "B-PERSON"], "Ann Bob")) == 2
    assert len(bio_to_spans([(0, 2), (3, 5)], ["B-AGE", "B-AGE"], "31 47")) == 2


def test_only_an_address_continues_over_a_line_break() -> None:
    text = "Ann Lee\n12 Main St\nSpringfield"
    offsets = _words(text)  # Ann Lee 12 Main St Springfield
    tags = ["B-PERSON", "I-PERSON", "I-STREET_ADDRESS", "I-STREET_ADDRESS", "I-STREET_ADDRESS", "I-STREET_ADDRESS"]
    assert bio_to_spans(offsets, tags, text) == [Span(0, 7, "PERSON"), Span(8, 30, "STREET_ADDRESS")]
    # without the text (no line breaks known) the I- tags continue the name as before
    assert bio_to_spans(offsets, tags) == [Span(0, 30, "STREET_ADDRESS")]
