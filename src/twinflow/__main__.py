import sys

from twinflow.cli import main

sys.exit(main())
