"""``python -m echoposed_ros.cli`` is the ``echoposed`` command."""
import sys

from echoposed_ros.cli import main

sys.exit(main())
