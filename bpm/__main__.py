import sys

from bpm.cli import main

sys.exit(main())
