"""Every command reports failure as one plain line and a documented exit code, never a traceback.

The commands run as separate processes, as a user (or CI: no TTY, 40 columns) runs them.
"""

from __future__ import annotations

import pytest
from cli_process import error_lines, run_cli

from hyper400k.console import EXIT_INPUT, EXIT_INTERNAL, EXIT_SYSTEM, report_exception


def assert_one_error(process, code: int, *fragments: str) -> str:
    assert process.returncode == code, process.stderr
    assert "Traceback" not in process.stderr
    lines = error_lines(process)
    assert len(lines) == 1, process.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_product_is_one_line_input_error(tmp_path):
    missing = tmp_path / "nothing_here.hdr"
    assert_one_error(
        run_cli("pipelines.cli", "inspect", missing), EXIT_INPUT, f"error: {missing}: no such file"
    )


def test_unreadable_data_file_is_a_system_error_naming_it(ng_copy):
    process = run_cli("pipelines.cli", "inspect", ng_copy, deny=[ng_copy])
    assert_one_error(process, EXIT_SYSTEM, f"error: {ng_copy}: Permission denied")


def test_unreadable_header_is_a_system_error_naming_it(ng_copy):
    header = ng_copy.with_name(ng_copy.name + ".hdr")
    process = run_cli("pipelines.cli", "inspect", header, deny=[header])
    assert_one_error(process, EXIT_SYSTEM, f"error: {header}:", "Permission denied")


def test_usage_error_is_one_line_pointing_at_help():
    line = assert_one_error(run_cli("pipelines.cli", "tile"), EXIT_INPUT, "Missing argument")
    assert line.endswith("tile --help')")


def test_debug_adds_the_traceback_before_the_error_line(tmp_path):
    missing = tmp_path / "nothing_here"
    process = run_cli("pipelines.cli", "--debug", "inspect", missing)
    assert process.returncode == EXIT_INPUT
    assert "Traceback (most recent call last)" in process.stderr
    assert process.stderr.strip().splitlines()[-1] == f"error: {missing}: no such file"


def test_specaware_downstream_missing_config_is_one_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_one_error(run_cli("specaware.cli", "finetune", missing), EXIT_INPUT, str(missing))


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (
            RuntimeError("projection went wrong"),
            EXIT_INTERNAL,
            "error: internal error: RuntimeError: projection went wrong",
        ),
        (
            OSError(28, "No space left on device", "/out/shard.tar"),
            EXIT_SYSTEM,
            "error: /out/shard.tar: No space left on device",
        ),
        (PermissionError(13, "Permission denied", "/out"), EXIT_SYSTEM, "error: /out: Permission denied"),
        (OSError(30, "Read-only file system"), EXIT_SYSTEM, "error: Read-only file system"),
        (ValueError("bad\n  value"), EXIT_INPUT, "error: bad value"),
    ],
)
def test_exit_code_and_line_of_each_kind_of_failure(capsys, exc, code, text):
    assert report_exception(exc, debug=False) == code
    assert capsys.readouterr().err.splitlines()[0].startswith(text)


def test_aviris_ng_header_with_braced_esri_wkt_inspects(tmp_path):
    """The ISOFIT-written AVIRIS-NG radiance header whose WKT once ended `inspect` in a pyproj traceback."""
    import json

    from test_conformance import ENTRIES, stage

    entry = next(e for e in ENTRIES if e["header"] == "ang20160910t185702_2rdn_img.hdr")
    header = stage(entry, tmp_path)
    process = run_cli(
        "pipelines.cli", "inspect", "--json", "--sensor", "aviris-ng", "--level", "L1",
        "--datetime", "2016-09-10T18:57:02", header,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    meta = json.loads(process.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert meta["crs"] == "EPSG:32611" and meta["shape"] == [25, 30, 425]
