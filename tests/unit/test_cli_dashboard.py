"""``kswarm dashboard`` without the dashboard extra: exit 2 naming the install command.

The dev venv has the extra installed, so a child process hides streamlit the way Python
documents (``sys.modules[name] = None``); that is the seam, as uninstalling it from the shared
venv is not an option. The image test runs the real case: the default image has no streamlit at
all (tests/e2e/test_image.py).
"""

from __future__ import annotations

import subprocess
import sys

HIDE = """
import sys

for name in {HIDDEN}:
    sys.modules[name] = None  # Python's own way to make a module unimportable
from kswarm.cli import main

main(sys.argv[1:])
"""


def kswarm(*args: str, hidden: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-c", HIDE.format(HIDDEN=set(hidden) or "set()"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_streamlit_the_dashboard_exits_2_naming_the_extra() -> None:
    done = kswarm("dashboard", hidden=("streamlit",))
    assert done.returncode == 2, done.stderr
    assert "streamlit not installed" in done.stderr
    assert "pip install 'kswarm[dashboard]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_plotly_too_both_are_named() -> None:
    done = kswarm("dashboard", hidden=("streamlit", "plotly"))
    assert done.returncode == 2
    assert "streamlit and plotly not installed" in done.stderr


def test_the_other_commands_never_need_the_extra() -> None:
    done = kswarm("sim", "--help", hidden=("streamlit", "plotly", "pandas", "pyarrow"))
    assert done.returncode == 0, done.stderr
    helped = kswarm("dashboard", "--help", hidden=("streamlit",))
    assert helped.returncode == 0 and "kswarm[dashboard]" in helped.stdout
