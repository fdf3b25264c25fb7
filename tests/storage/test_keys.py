"""API.md § POST artifacts and "Details pinned" § storageKey: the key rules as a table."""

from __future__ import annotations

import uuid

import pytest

from designrun.storage.keys import (
    MAX_FILE_NAME,
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    default_key,
    key_problem,
    own_prefix,
    run_prefix,
    safe_file_name,
)

RUN_ID = uuid.UUID("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")
OTHER_ID = uuid.UUID("0190a5b2-7c3d-7e4f-8a9b-ffffffffffff")

# 1024 bytes in segments of at most 255 bytes.
SEGMENTS_1024 = "/".join(["k" * 254] * 4) + "/kkkk"

ACCEPTED = [
    pytest.param("a", id="one-segment"),
    pytest.param("a/b/c.png", id="nested"),
    pytest.param(f"runs/{RUN_ID}/out.png", id="own-run-prefix"),
    pytest.param(f"runs/{str(RUN_ID).upper()}/out.png", id="own-run-prefix-upper-case"),
    pytest.param(f"runs/{RUN_ID}/a/b/c", id="own-run-deep"),
    pytest.param("a/..b", id="dotdot-inside-segment"),
    pytest.param("a/b..", id="dotdot-at-end-of-segment"),
    pytest.param("..a/b", id="dotdot-start-of-segment"),
    pytest.param(".hidden/x", id="dot-file"),
    pytest.param("a/.../b", id="three-dots-segment"),
    pytest.param("exports/site.zip", id="outside-runs"),
    pytest.param("runsx/other/x", id="runs-lookalike-prefix"),
    pytest.param(f"RUNS/{RUN_ID}/x", id="own-run-prefix-upper-case-runs"),
    pytest.param(f"x/runs/{OTHER_ID}/y", id="runs-not-first-segment"),
    pytest.param("données/été.png", id="non-ascii"),
    pytest.param("a b/c d", id="spaces"),
    pytest.param(SEGMENTS_1024, id="exactly-1024-bytes"),
    pytest.param("/".join(["é" * 127] * 4) + "/éé", id="exactly-1024-bytes-multibyte"),
    pytest.param("k" * MAX_SEGMENT_BYTES, id="255-byte-segment"),
]

REJECTED = [
    pytest.param("", "empty", id="empty"),
    pytest.param("/a", "leading", id="leading-slash"),
    pytest.param("/", "leading", id="only-slash"),
    pytest.param("..", "'..'", id="dotdot"),
    pytest.param("../a", "'..'", id="dotdot-first"),
    pytest.param("a/../b", "'..'", id="dotdot-middle"),
    pytest.param("a/..", "'..'", id="dotdot-last"),
    pytest.param(".", "'.'", id="dot"),
    pytest.param("./a", "'.'", id="dot-first"),
    pytest.param("a/./b", "'.'", id="dot-middle"),
    pytest.param("a/.", "'.'", id="dot-last"),
    pytest.param("a//b", "empty segment", id="double-slash"),
    pytest.param("a/", "empty segment", id="trailing-slash"),
    pytest.param(f"runs/{RUN_ID}/", "empty segment", id="own-prefix-only"),
    pytest.param("a\\b", "backslash", id="backslash"),
    pytest.param("..\\a", "backslash", id="backslash-traversal"),
    pytest.param("a\x00b", "control", id="nul"),
    pytest.param("a\nb", "control", id="newline"),
    pytest.param("a\rb", "control", id="carriage-return"),
    pytest.param("a\tb", "control", id="tab"),
    pytest.param("a\x1fb", "control", id="unit-separator"),
    pytest.param("a\x7fb", "control", id="delete"),
    pytest.param("a\x85b", "control", id="c1-next-line"),
    pytest.param(SEGMENTS_1024 + "k", "1024 bytes", id="1025-bytes"),
    pytest.param("é" * (MAX_KEY_BYTES // 2) + "k", "1024 bytes", id="1025-bytes-multibyte"),
    pytest.param("k" * (MAX_SEGMENT_BYTES + 1), "255 bytes", id="256-byte-segment"),
    pytest.param("a/" + "é" * 128, "255 bytes", id="256-byte-segment-multibyte"),
    pytest.param("runs", "not the prefix itself", id="bare-runs-word"),
    pytest.param(f"runs/{RUN_ID}", "not the prefix itself", id="bare-own-prefix"),
    pytest.param("RUNS", "not the prefix itself", id="bare-runs-upper-case"),
    pytest.param(f"RUNS/{OTHER_ID}/x", "another run", id="upper-case-runs-other-run"),
    pytest.param(f"Runs/{OTHER_ID}/x", "another run", id="mixed-case-runs-other-run"),
    pytest.param("€" * 342, "1024 bytes", id="342-chars-of-3-bytes"),
    pytest.param(f"runs/{OTHER_ID}/x.png", "another run", id="other-run-prefix"),
    pytest.param(f"runs/{str(OTHER_ID).upper()}/x", "another run", id="other-run-upper-case"),
    pytest.param("runs/not-a-uuid/x", "another run", id="runs-non-uuid-owner"),
    pytest.param(f"runs/{RUN_ID}x/y", "another run", id="own-id-with-suffix"),
]


@pytest.mark.parametrize("key", ACCEPTED)
def test_acceptable_key_has_no_problem(key):
    assert key_problem(key, RUN_ID) is None


@pytest.mark.parametrize(("key", "reason"), REJECTED)
def test_unacceptable_key_names_its_problem(key, reason):
    problem = key_problem(key, RUN_ID)
    assert problem is not None, key
    assert reason in problem, problem


def test_multibyte_characters_count_as_bytes_not_characters():
    key = "日" * 342  # 342 characters, 1026 bytes
    assert len(key) < MAX_KEY_BYTES
    assert key_problem(key, RUN_ID) is not None


def test_run_prefix_is_the_lower_case_id_with_a_trailing_slash():
    assert run_prefix(RUN_ID) == f"runs/{RUN_ID}/"


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        (f"runs/{RUN_ID}/a.png", f"runs/{RUN_ID}/"),
        (f"runs/{RUN_ID}/deep/er/a.png", f"runs/{RUN_ID}/"),
        (f"runs/{str(RUN_ID).upper()}/a.png", f"runs/{str(RUN_ID).upper()}/"),
        (f"runs/{RUN_ID}", None),
        (f"runs/{OTHER_ID}/a.png", None),
        (f"exports/{RUN_ID}/a.png", None),
        (f"RUNS/{RUN_ID}/a.png", f"RUNS/{RUN_ID}/"),
        ("runs", None),
    ],
)
def test_own_prefix_is_the_run_prefix_as_the_key_spells_it(key, prefix):
    assert own_prefix(key, RUN_ID) == prefix


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        pytest.param("report.pdf", "report.pdf", id="plain"),
        pytest.param("A-z_0.9", "A-z_0.9", id="all-kept-classes"),
        pytest.param("my file (1).png", "my_file__1_.png", id="spaces-and-parens"),
        pytest.param("été.png", "_t_.png", id="non-ascii-one-underscore-per-char"),
        pytest.param("a\x00b", "a_b", id="nul"),
        pytest.param("a:b*c?d", "a_b_c_d", id="windows-reserved"),
        pytest.param("dir/sub/name.txt", "name.txt", id="unix-path"),
        pytest.param("C:\\Users\\me\\pic.jpg", "pic.jpg", id="windows-path"),
        pytest.param("../../etc/passwd", "passwd", id="traversal"),
        pytest.param("", "file", id="empty"),
        pytest.param(None, "file", id="none"),
        pytest.param(".", "file", id="dot"),
        pytest.param("..", "file", id="dotdot"),
        pytest.param("a/", "file", id="ends-with-slash"),
        pytest.param("...", "...", id="three-dots-is-a-name"),
        pytest.param(".env", ".env", id="dot-file"),
    ],
)
def test_safe_file_name(name, safe):
    assert safe_file_name(name) == safe


@pytest.mark.parametrize(
    "name",
    ["x" * 5000, "日本" * 300, "a" * 199 + "é", "é" * 201, "../" * 300 + "y" * 300],
)
def test_safe_file_name_is_at_most_200_chars_of_the_safe_alphabet(name):
    safe = safe_file_name(name)
    assert 1 <= len(safe) <= MAX_FILE_NAME == 200
    assert safe not in {".", ".."}
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in safe), safe


def test_safe_file_name_truncation_never_leaves_dot_or_dotdot():
    # Only the first 200 characters are kept; whatever they are, never "." or "..".
    for name in [".." + "\u00e9" * 198, "." * 2, "." * 1]:
        assert safe_file_name(name) not in {"", ".", ".."}


def test_default_key_is_under_the_run_prefix_and_acceptable():
    artifact_id = uuid.uuid4()
    key = default_key(RUN_ID, artifact_id, "../My Report.pdf")
    assert key == f"runs/{RUN_ID}/{artifact_id}/My_Report.pdf"
    assert key_problem(key, RUN_ID) is None


@pytest.mark.parametrize("name", ["", ".", "..", None, "/", "a/.."])
def test_default_key_for_degenerate_names_is_acceptable(name):
    key = default_key(RUN_ID, uuid.uuid4(), name)
    assert key_problem(key, RUN_ID) is None
    assert key.endswith("/file")
