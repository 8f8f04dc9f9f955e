"""The README's "What to expect" table is the output of the command it shows (`python -m sdtp roofline`), not typed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from sdtp.commands.cli import main as cli_main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_roofline_table_is_the_commands_output(capsys):
    text = README.read_text()
    command = re.search(r"^python -m sdtp roofline (.+)$", text, re.M).group(1)
    table = re.search(r"<!-- roofline-table:[^\n]*-->\n(.*?)\n<!-- /roofline-table -->", text, re.S).group(1)
    assert cli_main(["roofline", *shlex.split(command)]) == 0
    assert capsys.readouterr().out.strip() == table.strip()
    # What the prose says about it: End2End lies between decode's gain and prefill's.
    rows = [line.split(" | ") for line in table.splitlines() if re.match(r"\| \d", line)]
    for row in rows:
        prefill, decode, e2e = (float(row[i]) for i in (5, 6, 7))
        assert decode < e2e < prefill
