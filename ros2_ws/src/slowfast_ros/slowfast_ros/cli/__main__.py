import sys

from slowfast_ros.cli import main

sys.exit(main())
