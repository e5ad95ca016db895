import sys

from aecnn.cli.main import main

sys.exit(main())
