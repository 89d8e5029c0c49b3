"""The documentation site (mkdocs: the user guide and the API reference from the docstrings) builds in strict mode,
so a broken link, a missing page or a docstring mkdocstrings cannot render fails the suite."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_mkdocs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    reference = (site / "api" / "hyper400k" / "index.html").read_text()
    assert 'id="hyper400k.product.open_product"' in reference  # generated from the docstrings
    assert 'id="specaware.data.open_shards"' in (site / "api" / "specaware" / "index.html").read_text()
    guide = (site / "index.html").read_text()
    assert "hyper400k build" in guide and "Reading products" in guide  # the README is the guide's first page
    for page in ("demo", "json-output", "dataset-card", "model-card"):
        assert (site / page / "index.html").is_file()
