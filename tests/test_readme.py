"""README is a contract too: its Python example runs as written, and it stays short."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def test_readme_api_example_runs(caltech_root, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 1, "README should hold exactly one Python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    monkeypatch.setenv("AECNN_DATA", str(caltech_root))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("['stem', 'layer1.0'") and out[0].endswith("(64, 8, 8)")
    assert re.fullmatch(r"\d+ B sent; class \S+", out[1]), out[1]
    assert re.fullmatch(r"image_\d+\.jpg: \S+ \(\d+ B up, \d+ ms\)", out[2]), out[2]
    assert (tmp_path / "runs" / "api" / "l1-x8.pt").is_file()


def test_readme_is_short():
    assert len(README.read_bytes()) <= 12_000  # "at most 12 KB", read strictly


def test_readme_results_table_is_generated_from_the_records():
    from experiments.headline import render

    text = README.read_text()
    block = text.split("tests/test_readme.py checks it -->\n", 1)[1].split("\n<!-- results: end")[0]
    assert block.strip() == render().strip()


def test_readme_numbers_match_the_package():
    """The split sizes and the demo's photo count that README quotes."""
    import yaml

    from aecnn.cli.demo import DEMO_CONFIG
    from aecnn.data.splits import Manifest, packaged_manifest

    text = " ".join(README.read_text().split())
    m = Manifest.load(packaged_manifest())
    assert f"{len(m.train):,} / {len(m.val):,} / {len(m.test):,} train / val / test" in text
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    per_class, size = demo["data"]["subset"], demo["data"]["input_size"]
    assert f"on {per_class} images per class at {size} px" in text
    assert f"sends the {len(m.classes) * max(1, per_class // 4)} test photos" in text
