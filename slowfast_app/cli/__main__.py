import sys

from slowfast_app.cli import main

sys.exit(main())
