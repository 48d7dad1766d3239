import pytest

from fogline.protocol import parse_labels


def test_parse_labels_accepts_prefixed_keys_and_empty_input():
    assert parse_labels("site=plant-7, tier=gold,example.com/arch=x86_64") == {
        "site": "plant-7",
        "tier": "gold",
        "example.com/arch": "x86_64",
    }
    assert parse_labels("") == {}


def test_parse_labels_refuses_keys_under_the_hub_prefix():
    # Claims, operators and devices type labels: fogline.dev/ is the hub's alone.
    with pytest.raises(ValueError, match="belong to the hub"):
        parse_labels("site=a,fogline.dev/arch=arm64")


@pytest.mark.parametrize("bad", ["site", "=x", "si te=x", "site=a b", "k=" + "v" * 64])
def test_parse_labels_rejects_bad_items_with_the_item_named(bad):
    with pytest.raises(ValueError):
        parse_labels(bad)
