"""``python -m d4m.settings COMMAND``: README's settings table of one command."""

import sys

from d4m.settings import markdown_table

print(markdown_table(" ".join(sys.argv[1:]) or "distill"))
