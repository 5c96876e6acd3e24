"""The built wheel carries its configs, kernel source and Hydra plugin, and nothing else.

That the installed wheel runs (``pip install .`` into a new venv from the lock file, then
``audioexp +experiment=demo --cfg job`` and a fast dev run from a directory outside the
checkout) is checked by ``.ci/installed-package-check``, which ``.ci/run`` calls after
``make test``: it needs a second full install, too slow for the suite.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("audioexp-*.whl")
    return path


def test_wheel_holds_configs_kernel_and_plugin(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = ROOT / "audioexp" / "conf"
    expected = {f"audioexp/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*.yaml") if "local" not in p.parts}
    assert expected and expected <= names, sorted(expected - names)[:5]
    assert "audioexp/features/sd_filterbank_kernel.cpp" in names
    assert {"hydra_plugins/audioexp_optuna_sweeper/resumable_optuna_sweeper.py",
            "hydra_plugins/audioexp_optuna_sweeper/_impl.py"} <= names
    assert not any(n.startswith(("tests/", "bench/", "experiments/")) for n in names)
