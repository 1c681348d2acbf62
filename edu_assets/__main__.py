import sys

from edu_assets.cli import main

sys.exit(main())
