"""The Prometheus alert rules and scrape config, checked by Prometheus' own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (scripts/setup.sh installs Debian's prometheus package as root)")
    return binary


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES / "semantic-router.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", "semantic-router.test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        r["alert"] for g in yaml.safe_load((RULES / "semantic-router.yml").read_text())["groups"] for r in g["rules"]
    }
    tests = yaml.safe_load((RULES / "semantic-router.test.yml").read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    assert alerts == fired, f"alerts never shown firing in a test: {sorted(alerts - fired)}"


@pytest.mark.parametrize("config", ["deploy/prometheus.yml", "deploy/k8s/base/prometheus/prometheus.yml"])
def test_promtool_checks_the_scrape_configs(config: str, tmp_path: Path) -> None:
    """Rule file paths point inside the containers; they are pointed at the repository's rules here."""
    raw = yaml.safe_load((ROOT / config).read_text())
    raw["rule_files"] = [str(RULES / Path(p).name) for p in raw.get("rule_files", [])]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(raw))
    result = subprocess.run([_promtool(), "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian's package drops it)")
    assert result.returncode == 0, result.stdout + result.stderr
