"""Key validation is the one guard between hostile names and the file system."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.errors import UsageError
from mirror.storage.keys import check_key, check_prefix, join

PIECES = st.sampled_from(["a", "..", ".", "", "/", "\\", "C:", "x.dcm", "_attic", "\x00", "ü", " "])


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=6).map("".join) | st.text(max_size=40))
def test_accepted_keys_stay_inside_the_root(text: str) -> None:
    try:
        key = check_key(text)
    except UsageError:
        return
    resolved = os.path.normpath(os.path.join("/root", *key.split("/")))
    assert resolved.startswith("/root/")
    assert resolved == "/root/" + key  # nothing was collapsed or reinterpreted
    assert "\\" not in key and "\x00" not in key


@pytest.mark.parametrize("key", ["a", "a/b.dcm", ".staging/r/1.2", "_attic/r/x", "a b/c"])
def test_ordinary_keys_pass(key: str) -> None:
    assert check_key(key) == key


def test_prefix_and_join() -> None:
    assert check_prefix("a/b/") == "a/b"
    assert check_prefix("") == ""
    with pytest.raises(UsageError):
        check_prefix("../a/")
    assert join("bucket/root", "k") == "bucket/root/k"
    assert join("bucket/root/", "") == "bucket/root"
