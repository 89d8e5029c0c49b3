"""Nothing under a build's INPUT is skipped silently: products, their parts, ignored files with the reason,
and failures (unreadable files and folders, data without its header)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_process import run_cli

from hyper400k.discovery import list_input
from hyper400k.synth import generate


def test_every_file_is_sorted_with_a_reason(realdata, tmp_path):
    product = generate("aviris-ng", "L1", 40, 30, tmp_path, seed=3)  # data, header, loc, obs
    (tmp_path / "README.md").write_text("notes\n")
    (tmp_path / "cube.img").write_bytes(b"\0" * 64)
    (tmp_path / "ang20190101t101010_rdn_v2p9_img").write_bytes(b"\0" * 64)
    (tmp_path / f"{product.name}.overrides.yaml").write_text("level: L1\n")
    shutil.copyfile(realdata / "speclib/s07_AV95_envi.hdr", tmp_path / "lib.hdr")
    shutil.copyfile(realdata / "speclib/s07_AV95_envi.sli", tmp_path / "lib.sli")
    listing = list_input(tmp_path)
    assert listing.products == [product.with_name(product.name + ".hdr").resolve()]
    assert {Path(i["path"]).name: i["reason"] for i in listing.ignored} == {
        "README.md": "not a product, a companion or a known side file",
        "lib.hdr": "ENVI spectral library, not an image",
    }
    reasons = {Path(f["path"]).name: f["reason"] for f in listing.failures}
    assert reasons["cube.img"].endswith("data file without a header: looked for cube.img.hdr and cube.hdr")
    assert reasons["ang20190101t101010_rdn_v2p9_img"].endswith(
        "looked for ang20190101t101010_rdn_v2p9_img.hdr"
    )
    assert len(reasons) == 2


def test_build_reports_unreadable_folders_and_files_and_exits_1(tmp_path):
    generate("aviris-ng", "L2", 64, 48, tmp_path / "in", seed=4)
    locked = tmp_path / "in" / "locked"
    locked.mkdir()
    (locked / "f080702t01p00r08rdn_c_sc01_ort_img.hdr").write_text("ENVI\n")
    secret = tmp_path / "in" / "secret.tif"
    secret.write_bytes(b"II*\0")
    (tmp_path / "in" / "notes.txt").write_text("flight log\n")
    out = tmp_path / "out"
    process = run_cli(
        "pipelines.cli", "build", tmp_path / "in", out, "--tile", "32", "--scheduler", "synchronous",
        "--no-progress", deny=[locked, secret],
    )  # fmt: skip
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr
    report = json.loads((out / "report" / "report.json").read_text())
    failures = {Path(f["path"]).name: f["reason"] for f in report["failures"]}
    assert failures["locked"].endswith("cannot list folder: Permission denied")
    assert failures["secret.tif"].endswith("cannot read file: permission denied")
    assert report["ignored"] == [
        {
            "path": str(tmp_path / "in" / "notes.txt"),
            "reason": "not a product, a companion or a known side file",
        }
    ]
    assert report["products_ok"] == 1
    failed_lines = [line for line in process.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed_lines) == 2
    assert "ignored: 1 file(s) under the input that are not products" in process.stdout
