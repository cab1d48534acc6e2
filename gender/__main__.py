import sys

from gender.cli import main

sys.exit(main())
