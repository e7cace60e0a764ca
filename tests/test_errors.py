"""`first_line`: the one helper that turns an error into one line, for every report the lab prints or records."""
from __future__ import annotations

from lightning_lab.errors import first_line

# torchvision's MNIST download error: each mirror's reason on the lines after the first
MIRRORS = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                       "<urlopen error [Errno -3] Temporary failure in name resolution>\n")
# jsonargparse's union error: the reason framed by lines listing every subtype tried
UNION = ValueError('Parser key "trainer.max_epochs":\n  Does not validate against any of the Union subtypes\n'
                   "  Subtypes: [<class 'int'>, <class 'NoneType'>]\n  Errors:\n    - Expected a <class 'int'>\n"
                   "    - Expected a <class 'NoneType'>\n  Given value type: <class 'str'>\n  Given value: x")


def test_the_first_line_with_the_type_name() -> None:
    assert first_line(MIRRORS) == "RuntimeError: Error downloading train-images-idx3-ubyte.gz:"
    assert first_line(KeyError()) == "KeyError"


def test_all_lines_keep_the_reason_and_leave_the_parsers_scaffolding_out() -> None:
    assert first_line(MIRRORS, all_lines=True) == (
        "RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried https://a/, got: "
        "<urlopen error [Errno -3] Temporary failure in name resolution>")
    assert first_line(UNION, all_lines=True) == "ValueError: Parser key \"trainer.max_epochs\": Expected a <class 'int'>"


def test_chained_causes_follow_and_the_limit_cuts() -> None:
    try:
        try:
            raise PermissionError("token\nrejected")
        except PermissionError as cause:
            raise ConnectionError("could not connect") from cause
    except ConnectionError as err:
        error = err
    assert first_line(error) == "ConnectionError: could not connect"
    assert first_line(error, all_lines=True, chained=True) == (
        "ConnectionError: could not connect <- PermissionError: token rejected")
    cut = first_line(error, chained=True, limit=30)
    assert len(cut) == 30 and cut.endswith(" ...")
