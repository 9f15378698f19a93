import sys

from onnxq.apps.cli import main

sys.exit(main())
