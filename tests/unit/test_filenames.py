"""Upload names made harmless to show and store: no directories, controls or bidi tricks,
never empty, cut without splitting a character; never a Windows device name in a bundle.
"""

from __future__ import annotations

import unicodedata

import pytest

from labelkit.filenames import not_a_device_name, safe_display_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("holiday.jpg", "holiday.jpg"),
        ("../../etc/passwd", "passwd"),
        ("a\\b\\c.jpg", "c.jpg"),
        ("C:\\Users\\me\\Pictures\\cat.png", "cat.png"),
        ("/abs/path/", "path"),
        ("evil\x00.jpg", "evil.jpg"),
        ("bell\x07 and\ttab\nnewline.png", "bell and tab newline.png"),
        ("  lots   of\u00a0\u2003space  .jpg", "lots of space .jpg"),
        ("photo\u202egpj.exe", "photogpj.exe"),  # RTL override: would display as "photoexe.jpg"
        ("\u2066isolate\u2069.png", "isolate.png"),
        ("cat 🐈 and 👨\u200d👩\u200d👧.jpg", "cat 🐈 and 👨\u200d👩\u200d👧.jpg"),  # emoji (ZWJ family) kept
        ("<script>alert(1)<script>.png", "<script>alert(1)<script>.png"),  # kept as text; UI escapes
        ("<script>alert(1)</script>.png", "script>.png"),  # "/" is a separator, as in any path
        ("", "unnamed"),
        ("..", "unnamed"),
        ("../", "unnamed"),
        ("\x00\x01\u202e", "unnamed"),
        ("   ", "unnamed"),
        (".bashrc", ".bashrc"),
    ],
)
def test_safe_display_name(name: str, expected: str) -> None:
    assert safe_display_name(name) == expected


def test_safe_display_name_normalises_to_nfc() -> None:
    decomposed = "cafe\u0301.jpg"
    assert safe_display_name(decomposed) == "caf\u00e9.jpg"
    assert unicodedata.is_normalized("NFC", safe_display_name(decomposed))


def test_long_name_is_truncated_keeping_the_extension() -> None:
    name = "x" * 300 + ".jpeg"
    safe = safe_display_name(name)
    assert len(safe) == 200 and safe.endswith(".jpeg") and safe.startswith("xxx")
    assert safe_display_name("y" * 300, max_length=50) == "y" * 50


def test_truncation_does_not_split_a_character_cluster() -> None:
    name = "a" * 194 + "e\u0301\u0301\u0301" + "b" * 10 + ".jpg"  # cut would land among accents
    safe = safe_display_name(name, max_length=200)
    assert len(safe) <= 200 and safe.endswith(".jpg")
    assert not unicodedata.combining(safe[-5])


def test_safe_display_name_has_no_controls_or_separators_ever() -> None:
    bidi = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    nasty = "".join(chr(c) for c in range(0, 0x80)) + bidi + ".png"
    safe = safe_display_name(nasty)
    assert safe.endswith(".png")
    assert not any(unicodedata.category(c) == "Cc" for c in safe)
    assert "/" not in safe and "\\" not in safe
    assert not set(safe) & set(bidi)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CON.jpg", "_CON.jpg"),
        ("con", "_con"),
        ("nul.jpg", "_nul.jpg"),
        ("Prn.tar.gz", "_Prn.tar.gz"),
        ("aux.", "_aux."),
        ("COM1.jpg", "_COM1.jpg"),
        ("com9.png", "_com9.png"),
        ("LPT1 .jpg", "_LPT1 .jpg"),  # trailing spaces and dots before the extension do not count
        ("lpt5. .jpg", "_lpt5. .jpg"),
        ("COM\u00b9.jpg", "_COM\u00b9.jpg"),
        ("conin$.txt", "_conin$.txt"),
        ("CONSOLE.jpg", "CONSOLE.jpg"),
        ("COM10.jpg", "COM10.jpg"),
        ("my-con.jpg", "my-con.jpg"),
        ("LPT.jpg", "LPT.jpg"),
        ("_CON.jpg", "_CON.jpg"),
        (".nul", ".nul"),
        ("", ""),
    ],
)
def test_windows_device_names_get_an_underscore(name: str, expected: str) -> None:
    assert not_a_device_name(name) == expected


def test_every_device_name_in_any_case_is_renamed() -> None:
    names = ["CON", "PRN", "AUX", "NUL"] + [f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)]
    for base in names:
        for variant in (base, base.lower(), base.title()):
            for tail in ("", ".jpg", ".JPEG", " .jpg", "..png", ".a.b"):
                assert not_a_device_name(variant + tail) == "_" + variant + tail
