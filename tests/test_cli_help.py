"""``hyper400k --help`` and ``specaware --help`` answer at once: the command-line modules import no heavy library.

Measured by what gets imported, not by time (CI machines are shared): rendering the help of both programs and of
every command, in a fresh interpreter, must leave torch, DeepSpeed, dask, GDAL and the rest out of ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

HEAVY = (
    "torch", "deepspeed", "dask", "distributed", "rasterio", "xarray", "netCDF4", "pandas", "pyarrow",
    "sklearn", "scipy", "matplotlib", "pystac", "webdataset", "numpy",
)

PROBE = """
import json, sys
from typer.main import get_command
from typer.testing import CliRunner
import pipelines.cli, specaware.cli
rendered = []
for app in (pipelines.cli.app, specaware.cli.app):
    runner = CliRunner()
    for args in [[]] + [[name] for name in get_command(app).commands]:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        rendered.append(" ".join(args) or "(program)")
print(json.dumps({"rendered": rendered, "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""


def test_help_of_both_programs_and_every_command_imports_no_heavy_library():
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="40")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert {"build", "tile", "pretrain", "baseline"} <= set(report["rendered"])
    imported = sorted(set(HEAVY) & set(report["modules"]))
    assert imported == [], f"--help imports {imported}: import them inside the commands that use them"
