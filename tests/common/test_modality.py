import pytest

from common.modality import Modality


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("vis", Modality.VISIBLE),
        ("Visible", Modality.VISIBLE),
        ("ir", Modality.INFRARED),
        (" infrared ", Modality.INFRARED),
        ("thermal", Modality.INFRARED),
        (Modality.INFRARED, Modality.INFRARED),
    ],
)
def test_parse_accepts_wire_values_and_aliases(raw, expected):
    assert Modality.parse(raw) is expected


def test_parse_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown modality 'depth'.*infrared"):
        Modality.parse("depth")


def test_wire_values_and_other():
    assert [m.value for m in Modality] == ["vis", "ir"]
    assert Modality.VISIBLE.other is Modality.INFRARED
    assert Modality.INFRARED.other is Modality.VISIBLE
