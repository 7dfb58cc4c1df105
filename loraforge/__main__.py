"""`python -m loraforge ...` — also what `accelerate launch -m loraforge run ...` and `torchrun -m` execute."""

import sys

from .cli import main

sys.exit(main())
