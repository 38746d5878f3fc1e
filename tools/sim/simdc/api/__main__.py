"""`python3 -m simdc.api`: run the API service."""
import sys

from .server import main

sys.exit(main())
