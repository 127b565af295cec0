"""Engines: the things that actually produce answers (local models, remote upstreams).

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy, before any
engine module imports torch: busy-waiting OpenMP threads were measured 4-10x slower on a machine
whose cores are shared with other work.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
