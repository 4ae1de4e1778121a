"""Stop strings over streamed text pieces."""

from llamacpy.engine.textgen import StopStrings


def run(stops, pieces):
    s = StopStrings(stops)
    out, stopped = [], False
    for p in pieces:
        text, stopped = s.push(p)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(s.flush())
    return "".join(out), stopped


def test_stop_split_across_pieces_is_removed():
    assert run(["</s>"], ["Hello <", "/", "s> world"]) == ("Hello ", True)


def test_partial_match_that_fails_is_released():
    assert run(["STOP"], ["ST", "ART", " now"]) == ("START now", False)


def test_no_stops_passes_through():
    assert run([], ["a", "b"]) == ("ab", False)


def test_earliest_stop_wins():
    assert run(["cd", "b"], ["abcd"]) == ("a", True)
