"""`python -m edu_assets.sandbox`: serve every vendor emulator until Ctrl-C."""

from .cli import main

raise SystemExit(main())
