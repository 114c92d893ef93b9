from __future__ import annotations

from pathlib import Path

from build_engines.cache import build_key, input_files

VERSIONS = {"torch": "1"}


def _tree(root: Path) -> Path:
    package = root / "pkg"
    (package / "data" / "authored").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "data" / "authored" / "rows.jsonl").write_text('{"text": "hi"}\n')
    (package / "reports").mkdir()
    (package / "reports" / "report.md").write_text("results are not inputs\n")
    return package


def test_key_is_stable_and_ignores_reports(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    key = build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS)
    (package / "reports" / "report.md").write_text("changed\n")
    assert build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS) == key
    assert len(key) == 16


def test_key_changes_with_code_data_config_and_versions(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    key = build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS)
    assert build_key(input_files(package), tmp_path, {"seed": 2}, VERSIONS) != key
    assert build_key(input_files(package), tmp_path, {"seed": 1}, {"torch": "2"}) != key
    (package / "a.py").write_text("x = 2\n")
    code_key = build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS)
    assert code_key != key
    (package / "data" / "authored" / "more.jsonl").write_text('{"text": "new"}\n')
    assert build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS) != code_key


def test_serving_only_modules_do_not_invalidate_trained_models(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    key = build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS)
    (package / "triton_model.py").write_text("# serving code\n")
    (package / "repository.py").write_text("# config rendering\n")
    assert build_key(input_files(package), tmp_path, {"seed": 1}, VERSIONS) == key
