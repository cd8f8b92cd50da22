"""The package imports from the repository root even with a copy installed
elsewhere: the local ``infinigram/`` then shadows the installed one, and
its kernels come from the top-level ``native/``."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code, cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONNOUSERSITE": "1"}
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_from_checkout_with_installed_copy(tmp_path):
    site = tmp_path / "site"
    # the files a wheel holds (setuptools' build_py, as `pip install .` runs
    # it; here without the bdist_wheel step, which needs the wheel package)
    build = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build",
         "--build-base", str(tmp_path / "build"), "build_py", "--build-lib", str(site)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert build.returncode == 0, build.stderr
    assert (site / "infinigram" / "native" / "search.py").is_file()  # the wheel maps native/
    deps = os.pathsep.join([str(site)] + [p for p in sys.path if p.endswith("site-packages")])
    code = "import infinigram, infinigram.native.search as s; print(infinigram.__file__, s.__file__)"
    here = _run(code, ROOT, deps)
    assert here.returncode == 0, here.stderr
    assert here.stdout.split() == [str(ROOT / "infinigram" / "__init__.py"),
                                   str(ROOT / "native" / "search.py")]
    away = _run(code, tmp_path, deps)
    assert away.returncode == 0, away.stderr
    assert away.stdout.split() == [str(site / "infinigram" / "__init__.py"),
                                   str(site / "infinigram" / "native" / "search.py")]
    cli = subprocess.run([sys.executable, "-S", "-m", "infinigram", "--help"], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": deps}, capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "Usage" in cli.stdout, cli.stderr
